// Where the server may be reached from, and by which names.
//   - Bound to any address other than loopback, it is open to whoever can reach that address, so it needs
//     api_keys unless told it is insecure on purpose (app.ts refuses to listen otherwise).
//   - Host header check, against DNS rebinding: a web page can make a visitor's browser resolve the page's own
//     name to 127.0.0.1 and then read a local server's answers as its own origin's. Those requests carry the
//     page's name in Host, so a server bound to loopback answers only loopback names and addresses unless told
//     more (allowed_hosts). So does one bound elsewhere without api_keys (--insecure: a container published on
//     127.0.0.1 is as local as a server bound there), whatever its address; with keys it answers any name unless
//     told, a page having no key to send. A rebinding takes a name the page's owner controls: an address as Host,
//     or a loopback name, is never one, and both are answered whatever allowed_hosts says, so that naming the public
//     host does not lock out Prometheus scraping by address or curl on the machine. allowed_hosts is no access
//     control: any client may send any Host (api_keys, or a firewall, keep clients out).
import net from 'node:net';

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

function unbracketed(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

export function isLoopback(host: string): boolean {
  const address = unbracketed(host).toLowerCase();
  return address === 'localhost' || address === '::1' || (net.isIPv4(address) && address.startsWith('127.')) || address === '::ffff:127.0.0.1';
}

// In a list of allowed hosts: any IP address.
const ADDRESSES = 'any IP address';
const LOCAL = [...LOOPBACK_NAMES, ADDRESSES];

// What a Host header may name when bound to `bindHost`, `keyed` when the server asks for API keys: the loopback
// names and any address, with those configured ("*": any); with none configured, any when bound beyond loopback
// with keys. null: any.
export function allowedHosts(configured: readonly string[] | null, bindHost: string, keyed: boolean): readonly string[] | null {
  if (configured !== null) return configured.includes('*') ? null : [...configured, ...LOCAL];
  if (keyed && !isLoopback(bindHost)) return null;
  return LOCAL;
}

// The name in a Host header, without its port: "[::1]:8080" -> "[::1]", "Example.com.:80" -> "example.com".
export function hostName(header: string): string {
  const name = header.startsWith('[') ? header.slice(0, header.indexOf(']') + 1) : header.split(':')[0];
  return name.toLowerCase().replace(/\.$/, '');
}

export function hostAllowed(header: string | undefined, allowed: readonly string[]): boolean {
  // Browsers always send Host: a request without one does not come from a web page.
  if (header === undefined) return true;
  const name = hostName(header);
  return allowed.some((a) => a === name || (a.startsWith('*.') && name.endsWith(a.slice(1))) || (a === ADDRESSES && net.isIP(unbracketed(name)) !== 0));
}
