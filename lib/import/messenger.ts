// Facebook Messenger's and Instagram's "Download your information" in JSON: a folder per chat
// (messages/inbox/mom_1234/) holding message_1.json, message_2.json..., parts of one conversation, newest first:
//   {"participants": [{"name": "Mom"}, ...], "messages": [{"sender_name", "timestamp_ms", "content", "photos", ...}],
//    "title": "Mom", "thread_path": "inbox/mom_1234"}
// Their strings are UTF-8 whose every byte was escaped as a character of its own ("\u00c3\u00a9" for "é"), which
// is repaired here. Messenger's end-to-end encrypted chats download in camelCase instead, read as well:
//   {"participants": ["Mom", ...], "threadName", "messages": [{"senderName", "timestamp", "text", "isUnsent", "media"}]}
import { isUtf8 } from 'node:buffer';
import path from 'node:path';
import { DropReason, ExportedChat, ExportedMessage, NO_IDS, jsonObject, jsonString } from './chat_export';

const ATTACHMENTS = ['photos', 'videos', 'audio_files', 'gifs', 'files', 'sticker', 'media'];
// The app's notices, written as if their actor had sent them: "Mom named the group Family.", "You left the group."
// Each is the whole text, so that a message that only begins so ("You left the group chat on read!") is kept: a
// notice that ends in a name ends in the app's full stop, and a missed call names its caller, one of the chat's
// participants ("You missed a call from Mom.", not "...from me yesterday"). The download writes them in the account's
// language: `actor` what follows the actor's name (English's "You" is an actor too), `you` the whole sentence of the
// account's owner where the language says it otherwise ("Vous avez quitté le groupe."); `attachment` and `unsent` the
// same of an attachment sent without text and of a message unsent; `reaction` a reaction or like sent as a message
// of its own. The languages' sentences are Facebook's translations of the English ones; a sentence missing here is
// kept as a message, so that none is listed on a guess.
// A reaction's emoji: no word ("Reacted calmly to your message" was typed).
const EMOJI = '[^\\p{L}\\p{N}\\s]\\S*';

interface NoticeWords {
  actor?: readonly string[];
  you?: readonly string[];
  attachment?: { actor: readonly string[]; you?: readonly string[] };
  unsent?: { actor: readonly string[]; you?: readonly string[] };
  reaction?: readonly string[];
}

const NOTICE_WORDS: Readonly<Record<string, NoticeWords>> = {
  en: {
    actor: [
      'named the group .+\\.',
      'removed the group name',
      'changed the group photo',
      'set the (?:quick reaction|emoji) to .+\\.',
      'changed the (?:chat )?theme(?: to .+\\.)?',
      'set the nickname for .+ to .+\\.',
      'set (?:his|her|their|your) own nickname to .+\\.',
      'set your nickname to .+\\.',
      'cleared the nickname for .+\\.',
      'cleared (?:his|her|their|your) own nickname',
      'left the group',
      'added .+ to the group',
      'removed .+ from the group',
      'created the group(?: .+\\.)?',
      'started (?:an?|the) (?:video |voice |audio )?(?:chat|call)',
      'started sharing (?:video|(?:his|her|their|your) screen)',
      'joined the (?:video|audio|voice) (?:chat|call)',
      'missed (?:a|your) (?:video )?call(?: from (?<caller>.+?)\\.)?',
    ],
    attachment: { actor: ['sent an attachment\\.'] },
    unsent: { actor: ['unsent a message'] },
    reaction: [`Reacted ${EMOJI} to your message`, 'Liked a message'],
  },
  de: {
    actor: ['hat die Gruppe verlassen', 'hat .+ zur Gruppe hinzugefügt', 'hat .+ aus der Gruppe entfernt', 'hat die Gruppe .+ genannt\\.', 'hat das Gruppenfoto geändert'],
    you: ['Du hast die Gruppe verlassen', 'Du hast .+ zur Gruppe hinzugefügt', 'Du hast .+ aus der Gruppe entfernt', 'Du hast die Gruppe .+ genannt\\.', 'Du hast das Gruppenfoto geändert'],
    attachment: { actor: ['hat einen Anhang gesendet\\.'], you: ['Du hast einen Anhang gesendet\\.'] },
    unsent: { actor: ['hat eine Nachricht entfernt'], you: ['Du hast eine Nachricht entfernt'] },
    reaction: [`Hat mit ${EMOJI} auf deine Nachricht reagiert`, `Hat auf deine Nachricht mit ${EMOJI} reagiert`],
  },
  es: {
    actor: ['salió del grupo', 'agregó a .+ al grupo', 'eliminó a .+ del grupo', 'nombró el grupo .+\\.', 'cambió la foto del grupo'],
    you: ['Saliste del grupo', 'Agregaste a .+ al grupo', 'Eliminaste a .+ del grupo', 'Nombraste el grupo .+\\.', 'Cambiaste la foto del grupo'],
    attachment: { actor: ['envió un archivo adjunto\\.', 'ha enviado un archivo adjunto\\.'], you: ['Enviaste un archivo adjunto\\.', 'Has enviado un archivo adjunto\\.'] },
    unsent: { actor: ['anuló el envío de un mensaje'], you: ['Anulaste el envío de un mensaje'] },
    reaction: [`Reaccionó (?:con )?${EMOJI} a tu mensaje`, 'Le gustó un mensaje'],
  },
  fr: {
    actor: ['a quitté le groupe', 'a ajouté .+ au groupe', 'a retiré .+ du groupe', 'a nommé le groupe .+\\.', 'a modifié la photo du groupe'],
    you: ['Vous avez quitté le groupe', 'Vous avez ajouté .+ au groupe', 'Vous avez retiré .+ du groupe', 'Vous avez nommé le groupe .+\\.', 'Vous avez modifié la photo du groupe'],
    attachment: { actor: ['a envoyé une pièce jointe\\.'], you: ['Vous avez envoyé une pièce jointe\\.'] },
    unsent: { actor: ['a retiré un message'], you: ['Vous avez retiré un message'] },
    reaction: [`A réagi (?:avec |par )?${EMOJI} à votre message`, 'A aimé un message'],
  },
  pt: {
    actor: ['saiu do grupo', 'adicionou .+ ao grupo', 'removeu .+ do grupo', 'nomeou o grupo como .+\\.', 'alterou a foto do grupo'],
    you: ['Você saiu do grupo', 'Você adicionou .+ ao grupo', 'Você removeu .+ do grupo', 'Você nomeou o grupo como .+\\.', 'Você alterou a foto do grupo'],
    attachment: { actor: ['enviou um anexo\\.'], you: ['Você enviou um anexo\\.', 'Enviaste um anexo\\.'] },
    unsent: { actor: ['cancelou o envio de uma mensagem'], you: ['Você cancelou o envio de uma mensagem'] },
    reaction: [`Reagiu (?:com )?${EMOJI} à (?:sua|tua) mensagem`, 'Curtiu uma mensagem'],
  },
  it: {
    actor: ['ha abbandonato il gruppo', 'ha aggiunto .+ al gruppo', 'ha rimosso .+ dal gruppo', 'ha chiamato il gruppo .+\\.', 'ha cambiato la foto del gruppo'],
    you: ['Hai abbandonato il gruppo', 'Hai aggiunto .+ al gruppo', 'Hai rimosso .+ dal gruppo', 'Hai chiamato il gruppo .+\\.', 'Hai cambiato la foto del gruppo'],
    attachment: { actor: ['ha inviato un allegato\\.'], you: ['Hai inviato un allegato\\.'] },
    unsent: { actor: ["ha annullato l'invio di un messaggio"], you: ["Hai annullato l'invio di un messaggio"] },
    reaction: [`Ha reagito (?:con )?${EMOJI} al tuo messaggio`],
  },
  nl: { attachment: { actor: ['heeft een bijlage gestuurd\\.'], you: ['Je hebt een bijlage gestuurd\\.'] } },
  tr: { attachment: { actor: ['bir ek gönderdi\\.'], you: ['Bir ek gönderdin\\.'] } },
  id: { attachment: { actor: ['mengirim lampiran\\.'], you: ['Anda mengirim lampiran\\.'] } },
  ru: { attachment: { actor: ['отправил\\(а\\) вложение\\.'], you: ['Вы отправили вложение\\.'] } },
  vi: { attachment: { actor: ['đã gửi một file đính kèm\\.'], you: ['Bạn đã gửi một file đính kèm\\.'] } },
};

function noticeWords<T>(kind: (words: NoticeWords) => readonly T[] | undefined): T[] {
  return Object.values(NOTICE_WORDS).flatMap((words) => kind(words) ?? []);
}

// A whole text: after its actor, or, where `you` gives the sentence, alone.
function wholeText(patterns: readonly string[], flags = ''): RegExp {
  return new RegExp(`^(?:${patterns.join('|')})\\.?$`, flags);
}

const NOTICE_ACTION = wholeText(noticeWords((words) => words.actor), 'i');
const NOTICE_OF_YOU = wholeText(noticeWords((words) => words.you), 'i');
const NOTICE = wholeText(['You are now connected on Messenger', 'The (?:video|audio|voice) chat ended'], 'i');
const REACTION = new RegExp(`^(?:${noticeWords((words) => words.reaction).join('|')})\\s*$`, 'iu');
// What the download writes as the text of an attachment sent without one; a caption is the sender's words, kept.
const ATTACHMENT_ACTION = wholeText(noticeWords((words) => words.attachment?.actor));
const ATTACHMENT_OF_YOU = wholeText(noticeWords((words) => words.attachment?.you));
const UNSENT_ACTION = wholeText(noticeWords((words) => words.unsent?.actor), 'i');
const UNSENT_OF_YOU = wholeText(noticeWords((words) => words.unsent?.you), 'i');

export function looksLikeMessenger(root: Record<string, unknown>): boolean {
  if (!Array.isArray(root.participants) || !Array.isArray(root.messages)) return false;
  const first = jsonObject(root.messages[0]);
  return first === null || 'sender_name' in first || 'senderName' in first;
}

export function parseMessenger(file: string, root: Record<string, unknown>): ExportedChat {
  const title = repairMojibake(jsonString(root.title) || jsonString(root.threadName));
  const participants = new Set((root.participants as unknown[]).map((p) => repairMojibake(jsonString(jsonObject(p)?.name) || jsonString(p))));
  return {
    format: 'messenger',
    file,
    // The chat's folder is named for it (mom_10158...), in every part of a download split in several zips and in
    // every download of the account, so that those make one chat, their overlap marked duplicate.
    key: `messenger:${path.basename(path.dirname(path.resolve(file)))}\0${title}`,
    title,
    group: (root.participants as unknown[]).length > 2 || root.thread_type === 'RegularGroup',
    skip: null,
    myIds: NO_IDS,
    // Newest first in the file: reversed, then sorted, so that messages of the same millisecond keep their order.
    messages: (root.messages as unknown[]).map((message) => toMessage(message, participants)).reverse().sort((a, b) => a.time - b.time),
  };
}

function toMessage(value: unknown, participants: ReadonlySet<string>): ExportedMessage {
  const message = jsonObject(value) ?? {};
  const sender = repairMojibake(jsonString(message.sender_name) || jsonString(message.senderName));
  const time = Number(message.timestamp_ms ?? message.timestamp);
  const text = repairMojibake(jsonString(message.content) || jsonString(message.text));
  const attached = ATTACHMENTS.some((field) => (Array.isArray(message[field]) ? (message[field] as unknown[]).length > 0 : message[field] !== undefined));
  const dropped: DropReason | null =
    sender === '' || !Number.isFinite(time)
      ? 'unreadable'
      : message.is_unsent === true || message.isUnsent === true || said(text, sender, UNSENT_ACTION, UNSENT_OF_YOU)
        ? 'deleted'
        : message.type === 'Call' || message.call_duration !== undefined
          ? 'call'
          : message.type === 'Subscribe' || message.type === 'Unsubscribe' || isNotice(text, sender, participants)
            ? 'system'
            : REACTION.test(text)
              ? 'reaction'
              : (attached || message.share !== undefined) && (text === '' || said(text, sender, ATTACHMENT_ACTION, ATTACHMENT_OF_YOU))
                ? 'media'
                : null;
  return { time: Number.isFinite(time) ? time : 0, sender, senderIds: NO_IDS, mine: null, text, dropped, line: 0 };
}

function isNotice(text: string, sender: string, participants: ReadonlySet<string>): boolean {
  if (NOTICE.test(text.trimEnd()) || NOTICE_OF_YOU.test(text.trimEnd())) return true;
  const rest = afterActor(text, sender);
  const action = rest === null ? null : NOTICE_ACTION.exec(rest);
  const caller = action?.groups?.caller;
  return action !== null && (caller === undefined || participants.has(caller));
}

// Whether `text` is the whole of one of the app's sentences: `action` after its sender's name, or `ofYou`.
function said(text: string, sender: string, action: RegExp, ofYou: RegExp): boolean {
  const rest = afterActor(text, sender);
  return ofYou.test(text.trimEnd()) || (rest !== null && action.test(rest));
}

// What follows the sender's name (or English's "You") that opens `text`; null where neither does. The app names a
// sender in its notices by their first name as well as by the whole name ("Jane sent an attachment." of Jane Doe's).
function afterActor(text: string, sender: string): string | null {
  const actor = [sender, sender.split(' ')[0], 'You'].find((name) => name !== '' && text.startsWith(`${name} `));
  return actor === undefined ? null : text.slice(actor.length + 1).trimEnd();
}

// Text whose UTF-8 bytes were each escaped as a character (U+0000-U+00FF) made text again. A string with a
// character beyond U+00FF was not escaped so, and one whose bytes are not UTF-8 was never UTF-8: both stay.
export function repairMojibake(text: string): string {
  if (!/[\u0080-\u00ff]/.test(text) || /[^\u0000-\u00ff]/.test(text)) return text;
  const bytes = Buffer.from(text, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : text;
}
