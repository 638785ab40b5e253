// Requests signed with a test certificate authority, over HTTP: what Alexa sends is accepted, and every way a
// request can fail Amazon's checks is refused with its status.
import t from 'tap';
import type { ChatFn } from '../../lib/server/service';
import { AlexaSignatureVerifier } from '../../lib/server/alexa/verify';
import { createTestPki, type KeyPair } from './pki';
import { CERT_BASE, launch, post, signatureHeaders, ssmlOf, startCertServer, startSkill, intent } from './harness';

const pki = createTestPki();
t.teardown(() => pki.cleanup());

const chat: ChatFn = async () => ({ text: 'Hello from the model.', finishReason: 'stop' });

t.test('signature verification', async (t) => {
  const certs = await startCertServer({
    'chain.pem': pki.signer.cert + pki.intermediate.cert,
    'full-chain.pem': pki.signer.cert + pki.intermediate.cert + pki.root.cert,
    'expired.pem': pki.expired.cert + pki.intermediate.cert,
    'wrong-name.pem': pki.wrongName.cert + pki.intermediate.cert,
    'stranger.pem': pki.stranger.cert,
    'extra-at-end.pem': pki.signer.cert + pki.intermediate.cert + pki.stranger.cert,
    'broken.pem': pki.signer.cert + pki.stranger.cert + pki.intermediate.cert,
    'garbage.pem': 'this is not a certificate',
  });
  t.teardown(certs.close);
  // A skill of its own for each case: the server downloads only a few chains a minute (see below), and the cases
  // name more.
  let skill: Awaited<ReturnType<typeof startSkill>>;
  t.beforeEach(async () => {
    skill = await startSkill({ greeting: 'Hello there.' }, chat, { trustedRoots: [pki.root.cert], fetchCertChain: certs.fetcher });
  });
  t.afterEach(() => skill.close());

  const send = (body: Record<string, unknown>, signer: KeyPair, certUrl: string) => {
    const raw = JSON.stringify(body);
    return post(skill.url, raw, signatureHeaders(raw, signer, certUrl));
  };

  t.test('a correctly signed request is answered', async (t) => {
    const answer = await send(launch(), pki.signer, `${CERT_BASE}chain.pem`);
    t.equal(answer.status, 200);
    t.equal(ssmlOf(answer), '<speak>Hello there.</speak>');
  });

  t.test('URL spellings Amazon allows are accepted and share one download', async (t) => {
    const before = certs.downloads.length;
    for (const url of ['https://S3.AMAZONAWS.COM/echo.api/chain.pem', 'https://s3.amazonaws.com:443/echo.api/../echo.api/chain.pem', `${CERT_BASE}chain.pem`]) {
      t.equal((await send(launch(), pki.signer, url)).status, 200, url);
    }
    t.same(certs.downloads.slice(before), ['/echo.api/chain.pem'], 'the chain is cached by URL: downloaded once in all');
  });

  t.test('a chain that includes the root itself is accepted', async (t) => {
    t.equal((await send(launch(), pki.signer, `${CERT_BASE}full-chain.pem`)).status, 200);
  });

  t.test('certificates after the trusted part of the chain are ignored; a gap in the chain is not', async (t) => {
    t.equal((await send(launch(), pki.signer, `${CERT_BASE}extra-at-end.pem`)).status, 200);
    const broken = await send(launch(), pki.signer, `${CERT_BASE}broken.pem`);
    t.equal(broken.status, 401);
    t.match(broken.body.error, /chain is broken between chain\[0\] and chain\[1\]/);
  });

  t.test('certificate URLs that break the rules are refused before any download', async (t) => {
    const downloads = certs.downloads.length;
    for (const url of [
      'http://s3.amazonaws.com/echo.api/chain.pem', // scheme
      'https://notamazon.com/echo.api/chain.pem', // host
      'https://s3.amazonaws.com.evil.example/echo.api/chain.pem', // host
      'https://s3.amazonaws.com:563/echo.api/chain.pem', // port
      'https://s3.amazonaws.com/EcHo.aPi/chain.pem', // path is case-sensitive
      'https://s3.amazonaws.com/invalid.path/chain.pem', // path
      'https://s3.amazonaws.com/echo.api/../invalid.path/chain.pem', // path after normalisation
      'not a url',
    ]) {
      const answer = await send(launch(), pki.signer, url);
      t.equal(answer.status, 401, url);
      t.match(answer.body.error, /SignatureCertChainUrl/, url);
    }
    t.equal(certs.downloads.length, downloads, 'nothing was downloaded');
  });

  t.test('missing headers are refused', async (t) => {
    const raw = JSON.stringify(launch());
    const signed = signatureHeaders(raw, pki.signer, `${CERT_BASE}chain.pem`);
    t.equal((await post(skill.url, raw)).status, 401, 'no headers');
    t.equal((await post(skill.url, raw, { SignatureCertChainUrl: signed.SignatureCertChainUrl })).status, 401, 'no Signature-256');
    t.equal((await post(skill.url, raw, { 'Signature-256': signed['Signature-256'] })).status, 401, 'no SignatureCertChainUrl');
  });

  t.test('a signature by another key is refused', async (t) => {
    const answer = await send(launch(), pki.wrongName, `${CERT_BASE}chain.pem`);
    t.equal(answer.status, 401);
    t.match(answer.body.error, /does not match the request body/);
    t.match(skill.logs[skill.logs.length - 1], { level: 'warn', message: 'alexa request refused', fields: { status: 401, reason: /does not match/ } }, 'logged with the reason');
  });

  t.test('a body altered after signing is refused', async (t) => {
    const raw = JSON.stringify(intent('ChatIntent', { utterance: 'hello' }));
    const headers = signatureHeaders(raw, pki.signer, `${CERT_BASE}chain.pem`);
    const altered = raw.replace('hello', 'jello');
    t.not(altered, raw);
    const answer = await post(skill.url, altered, headers);
    t.equal(answer.status, 401);
    t.match(answer.body.error, /does not match the request body/);
    // Re-serialising the parsed body would hide a change in whitespace; the raw bytes do not.
    t.equal((await post(skill.url, JSON.stringify(JSON.parse(raw), null, 1), headers)).status, 401, 'whitespace counts');
  });

  t.test('an expired signing certificate is refused', async (t) => {
    const answer = await send(launch(), pki.expired, `${CERT_BASE}expired.pem`);
    t.equal(answer.status, 401);
    t.match(answer.body.error, /expired/);
  });

  t.test('a certificate for another name is refused', async (t) => {
    const answer = await send(launch(), pki.wrongName, `${CERT_BASE}wrong-name.pem`);
    t.equal(answer.status, 401);
    t.match(answer.body.error, /echo-api\.amazon\.com/);
  });

  t.test('a certificate from an untrusted authority is refused', async (t) => {
    const answer = await send(launch(), pki.stranger, `${CERT_BASE}stranger.pem`);
    t.equal(answer.status, 401);
    t.match(answer.body.error, /trusted root/);
  });

  t.test('an unreadable or missing chain is refused', async (t) => {
    t.equal((await send(launch(), pki.signer, `${CERT_BASE}garbage.pem`)).status, 401);
    const missing = await send(launch(), pki.signer, `${CERT_BASE}missing.pem`);
    t.equal(missing.status, 401);
    t.match(missing.body.error, /cannot download.*404/);
  });

  t.test('timestamps more than 150 s away are refused', async (t) => {
    const url = `${CERT_BASE}chain.pem`;
    t.equal((await send(launch({ timestamp: new Date(Date.now() - 100_000) }), pki.signer, url)).status, 200, '100 s old');
    const stale = await send(launch({ timestamp: new Date(Date.now() - 200_000) }), pki.signer, url);
    t.equal(stale.status, 400, '200 s old');
    t.match(stale.body.error, /request\.timestamp/);
    t.equal((await send(launch({ timestamp: new Date(Date.now() + 200_000) }), pki.signer, url)).status, 400, '200 s ahead');
  });

  t.test('a request for another skill is refused', async (t) => {
    const answer = await send(launch({ applicationId: 'amzn1.ask.skill.someone-else' }), pki.signer, `${CERT_BASE}chain.pem`);
    t.equal(answer.status, 403);
    t.match(answer.body.error, /amzn1\.ask\.skill\.someone-else/);
  });

  t.test('a signed body that is not an Alexa request is refused', async (t) => {
    const raw = '{"version": "1.0", "request": ';
    t.equal((await post(skill.url, raw, signatureHeaders(raw, pki.signer, `${CERT_BASE}chain.pem`))).status, 400, 'not JSON');
    const noType = JSON.stringify({ ...launch(), request: { requestId: 'x', timestamp: new Date().toISOString() } });
    const answer = await post(skill.url, noType, signatureHeaders(noType, pki.signer, `${CERT_BASE}chain.pem`));
    t.equal(answer.status, 400);
    t.match(answer.body.error, /request\.type/);
  });
});

t.test('a chain that cannot be had is not asked for again for a minute; bad URLs do not push out the good chain', async (t) => {
  let now = Date.now();
  const certs = await startCertServer({ 'chain.pem': pki.signer.cert + pki.intermediate.cert, 'garbage.pem': 'this is not a certificate' });
  const skill = await startSkill({ greeting: 'Hello there.' }, chat, { trustedRoots: [pki.root.cert], fetchCertChain: certs.fetcher, now: () => now });
  t.teardown(async () => {
    await skill.close();
    await certs.close();
  });
  const send = (file: string) => {
    const raw = JSON.stringify(launch({ timestamp: new Date(now) }));
    return post(skill.url, raw, signatureHeaders(raw, pki.signer, `${CERT_BASE}${file}`));
  };
  const downloadsOf = (file: string) => certs.downloads.filter((u) => u === `/echo.api/${file}`).length;
  t.equal((await send('chain.pem')).status, 200);
  for (const file of ['missing.pem', 'garbage.pem']) {
    for (let i = 0; i < 3; i++) t.equal((await send(file)).status, 401, file);
    t.equal(downloadsOf(file), 1, `${file}: one download for three requests`);
  }
  for (let i = 0; i < 20; i++) t.equal((await send(`forged-${i}.pem`)).status, 401);
  t.equal((await send('chain.pem')).status, 200);
  t.equal(downloadsOf('chain.pem'), 1, 'the good chain is still cached after twenty bad URLs');
  now += 59_000;
  t.equal((await send('missing.pem')).status, 401);
  t.equal(downloadsOf('missing.pem'), 1, 'not again within the minute');
  now += 2_000;
  const again = await send('missing.pem');
  t.equal(again.status, 401);
  t.match(again.body.error, /cannot download.*404/);
  t.equal(downloadsOf('missing.pem'), 2, 'tried again after it');
});

t.test('forged requests naming new certificate URLs: the cheap checks first, then one download at a time and a few a minute', async (t) => {
  let now = Date.now();
  const certs = await startCertServer({ 'chain.pem': pki.signer.cert + pki.intermediate.cert });
  // The downloads under way at once, at most: each is held a moment so that any overlap would show.
  let active = 0;
  let most = 0;
  const fetchCertChain = async (url: URL): Promise<string> => {
    most = Math.max(most, ++active);
    try {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return await certs.fetcher(url);
    } finally {
      active--;
    }
  };
  const skill = await startSkill({}, chat, { trustedRoots: [pki.root.cert], fetchCertChain, now: () => now });
  t.teardown(async () => {
    await skill.close();
    await certs.close();
  });
  const send = (body: Record<string, unknown> | string, file: string) => {
    const raw = typeof body === 'string' ? body : JSON.stringify(body);
    return post(skill.url, raw, signatureHeaders(raw, pki.signer, `${CERT_BASE}${file}`));
  };

  t.equal((await send(launch({ applicationId: 'amzn1.ask.skill.someone-else', timestamp: new Date(now) }), 'other-skill.pem')).status, 403);
  t.equal((await send(launch({ timestamp: new Date(now - 200_000) }), 'stale.pem')).status, 400);
  t.equal((await send('{"version": "1.0"', 'not-json.pem')).status, 400);
  t.same(certs.downloads, [], 'another skill\'s id, a stale timestamp, a body that is no request: refused before any download');

  const forged = await Promise.all(Array.from({ length: 20 }, (_, i) => send(launch({ timestamp: new Date(now) }), `forged-${i}.pem`)));
  t.same(forged.map((a) => a.status), Array(20).fill(401));
  t.equal(certs.downloads.length, 4, 'twenty URLs, four downloads');
  t.equal(most, 1, 'one at a time');
  const refused = forged.find((a) => /not downloaded/.test(String(a.body.error)));
  t.match(refused?.body.error, /^certificate chain at https:\/\/s3\.amazonaws\.com\/echo\.api\/forged-\d+\.pem not downloaded: 4 chains were fetched for 127\.0\.0\.1 in the last 60 s/);

  t.equal((await send(launch({ timestamp: new Date(now) }), 'chain.pem')).status, 401, 'within the minute, the same address waits, whatever URL it names');
  now += 60_000;
  t.equal((await send(launch({ timestamp: new Date(now) }), 'chain.pem')).status, 200, 'and is fetched once the minute is over');
  t.equal(certs.downloads.at(-1), '/echo.api/chain.pem');
});

t.test('a forger who uses up the downloads of a minute holds back only his own address, not the chain Alexa\'s requests need', async (t) => {
  const certs = await startCertServer({ 'chain.pem': pki.signer.cert + pki.intermediate.cert });
  t.teardown(certs.close);
  const verifier = new AlexaSignatureVerifier({ trustedRoots: [pki.root.cert], fetchCertChain: certs.fetcher });
  const raw = Buffer.from(JSON.stringify(launch()));
  const verify = (file: string, client: string) => {
    const headers = signatureHeaders(raw.toString(), pki.signer, `${CERT_BASE}${file}`);
    return verifier.verify(headers.SignatureCertChainUrl, headers['Signature-256'], raw, client);
  };
  for (let i = 0; i < 4; i++) await t.rejects(verify(`forged-${i}.pem`, '198.51.100.7'), /cannot download/);
  await t.rejects(verify('forged-4.pem', '198.51.100.7'), /not downloaded: 4 chains were fetched for 198\.51\.100\.7/, 'the forger\'s fifth URL is not fetched');
  await t.resolves(verify('chain.pem', '54.239.0.1'), 'Alexa\'s request, from another address, has its chain fetched');
  t.equal(certs.downloads.length, 5);
});

t.test('verification off: warned at start, application id still checked', async (t) => {
  const skill = await startSkill({ verify_signatures: false, greeting: 'Unsafe hello.' }, chat);
  t.teardown(skill.close);
  t.equal(skill.logs[0]?.level, 'warn');
  t.match(skill.logs[0]?.message, /verify_signatures is false/);
  const answer = await post(skill.url, JSON.stringify(launch({ timestamp: new Date(Date.now() - 3600_000) })));
  t.equal(answer.status, 200, 'unsigned, old request accepted');
  t.equal(ssmlOf(answer), '<speak>Unsafe hello.</speak>');
  t.equal((await post(skill.url, JSON.stringify(launch({ applicationId: 'amzn1.ask.skill.other' })))).status, 403);
});

t.test('verification on: no warning', async (t) => {
  const skill = await startSkill({}, chat, { trustedRoots: [pki.root.cert] });
  t.teardown(skill.close);
  t.same(skill.logs, []);
});

t.test("a signed request takes its turn at the model's slots as the user it names; an unsigned one as its address", async (t) => {
  const certs = await startCertServer({ 'chain.pem': pki.signer.cert + pki.intermediate.cert });
  t.teardown(certs.close);
  const clients: (string | undefined)[] = [];
  const asking: ChatFn = async (_model, _conversation, options) => {
    clients.push(options.client);
    return { text: 'Hello.', finishReason: 'stop' };
  };
  const signed = await startSkill({}, asking, { trustedRoots: [pki.root.cert], fetchCertChain: certs.fetcher });
  const unsigned = await startSkill({ verify_signatures: false }, asking);
  t.teardown(() => Promise.all([signed.close(), unsigned.close()]));
  const sign = (body: Record<string, unknown>) => {
    const raw = JSON.stringify(body);
    return post(signed.url, raw, signatureHeaders(raw, pki.signer, `${CERT_BASE}chain.pem`));
  };
  const say = (opts: Parameters<typeof intent>[2]) => intent('ChatIntent', { utterance: 'hi' }, opts);
  t.equal((await sign(say({ user: 'amzn1.ask.account.ANN' }))).status, 200);
  t.equal((await sign(say({ user: 'amzn1.ask.account.ANN', person: 'amzn1.ask.person.BOB' }))).status, 200);
  const sessionOnly = say({ user: 'amzn1.ask.account.CAL' });
  delete ((sessionOnly.context as Record<string, Record<string, unknown>>).System).user;
  t.equal((await sign(sessionOnly)).status, 200);
  t.equal((await post(unsigned.url, JSON.stringify(say({ user: 'amzn1.ask.account.DAN' })))).status, 200);
  t.same(clients, ['alexa:amzn1.ask.account.ANN', 'alexa:amzn1.ask.person.BOB', 'alexa:amzn1.ask.account.CAL', '127.0.0.1'],
    "the account, the person Alexa recognized within it, the session's user; unsigned, the address and not the user it names");
  const badPerson = say({ person: 'amzn1.ask.person.EVE' });
  ((badPerson.context as Record<string, Record<string, unknown>>).System).person = { personId: 7 };
  const refused = await sign(badPerson);
  t.equal(refused.status, 400);
  t.match(refused.body.error, /^context\.System\.person\.personId: must be a non-empty string/);
  t.equal(clients.length, 4, 'the model was not asked');
});
