// Proof that a request comes from Alexa, as Amazon requires of skills hosted as web services
// (developer.amazon.com: "Host a custom skill as a web service", "Verify that the request was sent by Alexa").
// Written on node:crypto's X509Certificate rather than ask-sdk-express-adapter or alexa-verifier because
// neither lets the caller supply the trusted roots or the certificate download, which offline tests need;
// the rules themselves are never relaxed for tests: tests swap the downloader, not the URL checks.
import crypto, { X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { AlexaRejection } from './errors';

const CERT_URL_HOST = 's3.amazonaws.com';
const CERT_URL_PATH_PREFIX = '/echo.api/';
const SIGNING_CERT_SAN = 'DNS:echo-api.amazon.com';
// Amazon: "the request timestamp is within 150 seconds of the current time".
const TIMESTAMP_TOLERANCE_MS = 150_000;
// The chain is a few kilobytes; anything much bigger is not Amazon's.
const MAX_CERT_CHAIN_BYTES = 64 * 1024;
const CERT_DOWNLOAD_TIMEOUT_MS = 2_000;
// Amazon rotates its signing certificate rarely; a handful of URLs covers it, and the bound keeps a flood of
// distinct (valid-looking) URLs from growing the cache.
const MAX_CACHED_CHAINS = 8;
// A chain that could not be had (a download that failed, a file that is no chain) is not asked for again for a
// while: a forged request may name any URL under /echo.api/, and each would cost a download. Failures are kept
// apart from the chains, so that a flood of bad URLs cannot push the good chain out.
const FAILED_CHAIN_RETRY_MS = 60_000;
const MAX_CACHED_FAILURES = 64;
// However many URLs forged requests name, the server downloads one chain at a time, and a few a minute for each
// client address: Amazon signs with one certificate, whose chain is cached once fetched. By address, so that a
// forger who uses up a window does not also hold back the download Amazon's own requests need (after a restart, or
// a certificate renewed), which come from Amazon's addresses.
const MAX_DOWNLOADS_PER_WINDOW = 4;
const DOWNLOAD_WINDOW_MS = 60_000;
const MAX_WINDOWS = 1024;

export type CertChainFetcher = (url: URL) => Promise<string>;

export interface SignatureVerifierOptions {
  trustedRoots?: readonly string[]; // PEM certificates; default: Node's bundled Mozilla roots (tls.rootCertificates)
  fetchCertChain?: CertChainFetcher; // default: an HTTPS GET with a timeout and a size limit
  now?: () => number; // ms since the epoch; tests move the clock
}

// The SignatureCertChainUrl rules: https, host s3.amazonaws.com (any case), port 443 if given, and a path that
// starts with /echo.api/ (case-sensitive) once dot segments are resolved, which the WHATWG URL parser does.
export function checkCertChainUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new AlexaRejection(401, `SignatureCertChainUrl is not a URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'https:') throw new AlexaRejection(401, `SignatureCertChainUrl must use https, not ${url.protocol}`);
  if (url.hostname.toLowerCase() !== CERT_URL_HOST) {
    throw new AlexaRejection(401, `SignatureCertChainUrl host must be ${CERT_URL_HOST}, not ${url.hostname}`);
  }
  // URL drops a port equal to the scheme's default, so any port left here is not 443.
  if (url.port !== '') throw new AlexaRejection(401, `SignatureCertChainUrl port must be 443, not ${url.port}`);
  if (!url.pathname.startsWith(CERT_URL_PATH_PREFIX)) {
    throw new AlexaRejection(401, `SignatureCertChainUrl path must start with ${CERT_URL_PATH_PREFIX}, not ${url.pathname}`);
  }
  if (url.username !== '' || url.password !== '') throw new AlexaRejection(401, 'SignatureCertChainUrl must not carry credentials');
  return url;
}

export function checkTimestamp(timestamp: string, nowMs: number): void {
  const at = Date.parse(timestamp);
  if (Number.isNaN(at)) throw new AlexaRejection(400, `request.timestamp is not an ISO 8601 time: ${JSON.stringify(timestamp)}`);
  const skewSeconds = Math.round(Math.abs(nowMs - at) / 1000);
  if (Math.abs(nowMs - at) > TIMESTAMP_TOLERANCE_MS) {
    throw new AlexaRejection(400, `request.timestamp ${timestamp} is ${skewSeconds} s from now (tolerance ${TIMESTAMP_TOLERANCE_MS / 1000} s)`);
  }
}

// GET over http or https (the scheme was vetted by checkCertChainUrl; tests point it at a loopback server).
export function downloadText(url: URL): Promise<string> {
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.get(url, { timeout: CERT_DOWNLOAD_TIMEOUT_MS }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${url.href} answered ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_CERT_CHAIN_BYTES) {
          req.destroy(new Error(`GET ${url.href}: more than ${MAX_CERT_CHAIN_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url.href}: no answer within ${CERT_DOWNLOAD_TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}

function parsePemBundle(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error(`${what} holds no PEM certificate`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new Error(`${what}: certificate ${i} does not parse (${(err as Error).message})`);
    }
  });
}

function checkValidNow(cert: X509Certificate, nowMs: number, role: string): void {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (Number.isNaN(from) || Number.isNaN(to)) throw new AlexaRejection(401, `${role} certificate has unreadable validity dates`);
  if (nowMs < from) throw new AlexaRejection(401, `${role} certificate (${cert.subject.replace(/\n/g, ', ')}) is not valid before ${cert.validFrom}`);
  if (nowMs > to) throw new AlexaRejection(401, `${role} certificate (${cert.subject.replace(/\n/g, ', ')}) expired ${cert.validTo}`);
}

function issuedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  return issuer.ca && child.checkIssued(issuer) && child.verify(issuer.publicKey);
}

export class AlexaSignatureVerifier {
  private readonly roots: X509Certificate[];
  private readonly fetchCertChain: CertChainFetcher;
  private readonly now: () => number;
  // Keyed by the normalised URL: the chains downloaded, the downloads under way (each shared by the requests
  // that wait for it), and the failures with the time until which they stand.
  private readonly chains = new Map<string, X509Certificate[]>();
  private readonly downloads = new Map<string, Promise<X509Certificate[]>>();
  private readonly failures = new Map<string, { error: AlexaRejection; until: number }>();
  // By client address, when the downloads of its last window started; and the last download queued, which the
  // next waits for.
  private readonly downloadTimes = new Map<string, number[]>();
  private lastDownload: Promise<unknown> = Promise.resolve();

  constructor(options: SignatureVerifierOptions = {}) {
    this.roots = (options.trustedRoots ?? tls.rootCertificates).flatMap((pem, i) => parsePemBundle(pem, `trusted root ${i}`));
    this.fetchCertChain = options.fetchCertChain ?? downloadText;
    this.now = options.now ?? Date.now;
  }

  // Throws AlexaRejection(401) unless `signature256` (the Signature-256 header) is an RSA SHA-256 signature of
  // exactly `rawBody` by a currently valid certificate for echo-api.amazon.com that chains to a trusted root.
  // `client`: the address the request came from, whose downloads are bounded.
  async verify(certChainUrl: string | undefined, signature256: string | undefined, rawBody: Buffer, client = ''): Promise<void> {
    if (!certChainUrl) throw new AlexaRejection(401, 'missing SignatureCertChainUrl header');
    if (!signature256) throw new AlexaRejection(401, 'missing Signature-256 header');
    const url = checkCertChainUrl(certChainUrl);
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(signature256)) throw new AlexaRejection(401, 'Signature-256 header is not base64');

    const chain = await this.certChain(url, client);
    const nowMs = this.now();
    const checkValid = (cert: X509Certificate, role: string): void => {
      try {
        checkValidNow(cert, nowMs, role);
      } catch (err) {
        // Amazon may replace the file behind the URL when a certificate is renewed: fetch it afresh next time.
        this.chains.delete(url.href);
        throw err;
      }
    };
    const leaf = chain[0];
    const sans = (leaf.subjectAltName ?? '').split(', ');
    if (!sans.includes(SIGNING_CERT_SAN)) {
      throw new AlexaRejection(401, `signing certificate is not for echo-api.amazon.com (subjectAltName: ${leaf.subjectAltName ?? 'none'})`);
    }
    // Walk up from the signing certificate and stop at the first one a trusted root vouches for (as OpenSSL's
    // trusted-first path building does), so extra cross-signed certificates at the end of the file do not matter.
    let anchor: X509Certificate | undefined;
    for (let i = 0; ; i++) {
      const cert = chain[i];
      checkValid(cert, i === 0 ? 'signing' : `chain[${i}]`);
      anchor = this.roots.find((root) => root.fingerprint256 === cert.fingerprint256 || issuedBy(cert, root));
      if (anchor) break;
      if (i + 1 === chain.length) {
        throw new AlexaRejection(401, `certificate chain does not lead to a trusted root (last issuer: ${cert.issuer.replace(/\n/g, ', ')})`);
      }
      if (!issuedBy(cert, chain[i + 1])) throw new AlexaRejection(401, `certificate chain is broken between chain[${i}] and chain[${i + 1}]`);
    }
    checkValid(anchor, 'root');

    if (leaf.publicKey.asymmetricKeyType !== 'rsa') throw new AlexaRejection(401, 'signing certificate does not hold an RSA key');
    if (!crypto.verify('sha256', rawBody, leaf.publicKey, Buffer.from(signature256, 'base64'))) {
      throw new AlexaRejection(401, 'Signature-256 does not match the request body');
    }
  }

  private async certChain(url: URL, client: string): Promise<X509Certificate[]> {
    const key = url.href;
    const cached = this.chains.get(key);
    if (cached) return cached;
    const failed = this.failures.get(key);
    if (failed && this.now() < failed.until) throw failed.error;
    let pending = this.downloads.get(key);
    if (!pending) {
      const nowMs = this.now();
      const times = (this.downloadTimes.get(client) ?? []).filter((t) => nowMs - t < DOWNLOAD_WINDOW_MS);
      // Not remembered as a failure: the URL may be Amazon's, and is fetched once the window has room again.
      if (times.length >= MAX_DOWNLOADS_PER_WINDOW) {
        throw new AlexaRejection(401, `certificate chain at ${key} not downloaded: ${MAX_DOWNLOADS_PER_WINDOW} chains were fetched for ${client || 'this client'} in the last ${DOWNLOAD_WINDOW_MS / 1000} s, the most allowed, as requests that name new certificate URLs are likely forged; it is fetched when asked for once the minute is over`);
      }
      remember(this.downloadTimes, client, [...times, nowMs], MAX_WINDOWS);
      const fetched = this.lastDownload.then(() => this.fetchCertChain(url));
      this.lastDownload = fetched.catch(() => undefined);
      pending = fetched
        .then(
          (pem) => {
            try {
              return parsePemBundle(pem, `certificate chain at ${key}`);
            } catch (err) {
              throw new AlexaRejection(401, (err as Error).message);
            }
          },
          (err: Error) => {
            throw new AlexaRejection(401, `cannot download the certificate chain: ${err.message}`);
          },
        )
        .then(
          (chain) => {
            remember(this.chains, key, chain, MAX_CACHED_CHAINS);
            return chain;
          },
          (err: AlexaRejection) => {
            remember(this.failures, key, { error: err, until: this.now() + FAILED_CHAIN_RETRY_MS }, MAX_CACHED_FAILURES);
            throw err;
          },
        )
        .finally(() => this.downloads.delete(key));
      this.downloads.set(key, pending);
    }
    return pending;
  }
}

// Sets `key` as the newest entry of `map`, dropping the oldest beyond `max`.
function remember<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  if (map.size >= max) map.delete(map.keys().next().value as string);
  map.set(key, value);
}
