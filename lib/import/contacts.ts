// An address book exported as vCards (.vcf: macOS and iCloud Contacts "Export vCard", Android's and Google
// Contacts' export), to name the people an export knows only by number or address: a Mac's chat.db always, SMS
// backups and WhatsApp chats for people not saved in the phone. Reads vCard 2.1, 3.0 and 4.0: folded lines, Apple's
// grouped properties (item1.TEL), escaped characters, and Android's quoted-printable names. A number matches on its
// last ten digits (so +1 555 123 4567 and (555) 123-4567 are one), an e-mail address in any case.
import fs from 'node:fs';
import { ChatImportError, decodeExport, withoutDirectionMarks } from './chat_export';

export type Contacts = ReadonlyMap<string, string>;  // addressKey -> the contact's name

// What a phone number or e-mail address is matched by; null for anything else (a name).
export function addressKey(address: string): string | null {
  const text = withoutDirectionMarks(address).trim();  // WhatsApp sets marks around numbers
  if (/^[^\s@]+@[^\s@]+$/.test(text)) return text.toLowerCase();
  if (!/^\+?[\d\s().\-/]+$/.test(text)) return null;
  const digits = text.replace(/\D/g, '');
  return digits.length < 3 ? null : digits.slice(-10);
}

// The contact's name for `address`, or the address itself.
export function contactName(contacts: Contacts, address: string): string {
  const key = addressKey(address);
  return (key !== null && contacts.get(key)) || address;
}

interface Property {
  name: string;              // upper case, without its group
  params: string[];          // upper case
  value: string;
}

// The vCard lines of `text`, unfolded: a line that starts with a space or tab continues the one before, and a
// quoted-printable value whose line ends in '=' goes on in the next.
function properties(text: string): { property: Property; line: number }[] {
  const out: { property: Property; line: number }[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    let raw = lines[i];
    while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1])) raw += lines[++i].slice(1);
    const colon = raw.indexOf(':');
    if (colon < 0) continue;
    const [head, ...params] = raw.slice(0, colon).split(';');
    const upperParams = params.map((p) => p.toUpperCase());
    let value = raw.slice(colon + 1);
    if (upperParams.includes('ENCODING=QUOTED-PRINTABLE') || upperParams.includes('QUOTED-PRINTABLE')) {
      while (value.endsWith('=') && i + 1 < lines.length) value = value.slice(0, -1) + lines[++i];
      value = quotedPrintable(value);
    }
    out.push({ property: { name: head.replace(/^.*\./, '').toUpperCase(), params: upperParams, value }, line });
  }
  return out;
}

// Quoted-printable: =XX stands for the byte XX, other bytes for themselves; the bytes are UTF-8.
function quotedPrintable(value: string): string {
  const encoded = Buffer.from(value, 'utf8');
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    const hex = encoded.toString('latin1', i + 1, i + 3);
    if (encoded[i] === 0x3d && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(encoded[i]);
  }
  return Buffer.from(bytes).toString('utf8');
}

// A text value: \, \; \n unescaped.
function unescape(value: string): string {
  return value.replace(/\\([\\,;nN])/g, (_, c: string) => (c === 'n' || c === 'N' ? ' ' : c)).trim();
}

// The contacts of .vcf files: each number and address of a card under the card's name (FN, else N's given and
// family names, else its organisation). The first card to claim an address keeps it.
export function readContacts(files: readonly string[]): Contacts {
  const contacts = new Map<string, string>();
  for (const file of files) {
    const text = decodeExport(file, fs.readFileSync(file));
    let card: { start: number; name: string; structured: string; org: string; addresses: string[] } | null = null;
    let cards = 0;
    for (const { property, line } of properties(text)) {
      if (property.name === 'BEGIN' && property.value.trim().toUpperCase() === 'VCARD') {
        card = { start: line, name: '', structured: '', org: '', addresses: [] };
        continue;
      }
      if (!card) continue;
      if (property.name === 'FN') card.name = unescape(property.value);
      else if (property.name === 'N') card.structured = property.value.split(';').slice(0, 2).reverse().map(unescape).filter(Boolean).join(' ');
      else if (property.name === 'ORG') card.org = unescape(property.value.split(';')[0]);
      else if (property.name === 'TEL' || property.name === 'EMAIL') card.addresses.push(unescape(property.value.replace(/^tel:|^mailto:/i, '')));
      else if (property.name === 'END' && property.value.trim().toUpperCase() === 'VCARD') {
        cards++;
        const name = card.name || card.structured || card.org;
        for (const address of name ? card.addresses : []) {
          const key = addressKey(address);
          if (key !== null && !contacts.has(key)) contacts.set(key, name);
        }
        card = null;
      }
    }
    if (cards === 0) throw new ChatImportError(file, null, 'no vCard in it (BEGIN:VCARD ... END:VCARD): --contacts takes an address book exported as .vcf');
    if (card) throw new ChatImportError(file, card.start, 'this vCard has no END:VCARD: the file is cut short; export it again');
  }
  return contacts;
}
