// A throwaway certificate authority made with the openssl CLI at test time, shaped like Amazon's:
// root CA -> intermediate CA -> signing certificate for echo-api.amazon.com, plus the bad certificates the
// verifier must refuse.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface KeyPair {
  cert: string; // PEM
  key: string; // PEM
}

export interface TestPki {
  root: KeyPair;
  intermediate: KeyPair;
  signer: KeyPair; // valid, SAN echo-api.amazon.com
  expired: KeyPair; // same chain and SAN, validity in 2020
  wrongName: KeyPair; // valid, SAN evil.example.com
  stranger: KeyPair; // SAN echo-api.amazon.com but issued by a CA nobody trusts
  dir: string;
  cleanup(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

const CA_EXTENSIONS = 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n';
const leafExtensions = (dns: string): string => `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=DNS:${dns}\n`;

function selfSignedCa(dir: string, name: string, cn: string): void {
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '30', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

function issue(dir: string, name: string, cn: string, issuer: string, extensions: string): void {
  fs.writeFileSync(path.join(dir, `${name}.ext`), extensions);
  openssl(dir, ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.pem`, '-CAkey', `${issuer}.key`, '-set_serial', String(Math.floor(Math.random() * 1e9)),
    '-days', '30', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.pem`]);
}

// `openssl x509` cannot back-date a certificate; `openssl ca` can.
function issueExpired(dir: string, name: string, issuer: string): void {
  fs.mkdirSync(path.join(dir, 'ca-db'));
  fs.writeFileSync(path.join(dir, 'ca-db/index.txt'), '');
  fs.writeFileSync(path.join(dir, 'ca-db/serial'), '1000\n');
  fs.writeFileSync(path.join(dir, `${name}.ext`), leafExtensions('echo-api.amazon.com'));
  fs.writeFileSync(path.join(dir, 'ca.cnf'), [
    '[ca]', 'default_ca = test_ca', '[test_ca]', 'database = ca-db/index.txt', 'new_certs_dir = ca-db', 'serial = ca-db/serial',
    'default_md = sha256', 'policy = any', 'unique_subject = no', '[any]', 'commonName = supplied', '',
  ].join('\n'));
  openssl(dir, ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=echo-api.amazon.com']);
  openssl(dir, ['ca', '-batch', '-config', 'ca.cnf', '-cert', `${issuer}.pem`, '-keyfile', `${issuer}.key`, '-in', `${name}.csr`, '-out', `${name}.pem`,
    '-startdate', '20200101000000Z', '-enddate', '20200201000000Z', '-notext', '-extfile', `${name}.ext`]);
}

export function createTestPki(): TestPki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-alexa-pki-'));
  selfSignedCa(dir, 'root', 'Dixie Test Root CA');
  issue(dir, 'intermediate', 'Dixie Test Intermediate CA', 'root', CA_EXTENSIONS);
  issue(dir, 'signer', 'echo-api.amazon.com', 'intermediate', leafExtensions('echo-api.amazon.com'));
  issue(dir, 'wrongName', 'evil.example.com', 'intermediate', leafExtensions('evil.example.com'));
  issueExpired(dir, 'expired', 'intermediate');
  selfSignedCa(dir, 'strangerRoot', 'Untrusted Root CA');
  issue(dir, 'stranger', 'echo-api.amazon.com', 'strangerRoot', leafExtensions('echo-api.amazon.com'));
  const read = (name: string): KeyPair => ({
    cert: fs.readFileSync(path.join(dir, `${name}.pem`), 'utf8'),
    key: fs.readFileSync(path.join(dir, `${name}.key`), 'utf8'),
  });
  return {
    root: read('root'),
    intermediate: read('intermediate'),
    signer: read('signer'),
    expired: read('expired'),
    wrongName: read('wrongName'),
    stranger: read('stranger'),
    dir,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
