// WhatsApp's "Export chat" text file. Each message starts a line with its date and time, then the sender:
//   Android  12/31/20, 10:15 PM - Mom: Hi!          31.12.20, 22:15 - Mom: Hi!
//   iOS      [12/31/20, 10:15:03 PM] Mom: Hi!       [31.12.20, 22:15:03] Mom: Hi!
// and every line that does not start so continues the message before it. The date is in the phone's locale
// (day, month and year in any order, 2 or 4 digits; Finnish "klo", Korean "오후" and the like between date and
// time; Arabic-Indic digits; on iOS in Vietnamese the time before the date), the clock 12- or 24-hour. Notices of
// the app itself come without a sender on Android ("Messages and calls are end-to-end encrypted...", "Mom added
// Dad") and, on iOS, with a direction mark opening the text ("Mom: \u200eimage omitted", a right-to-left mark in
// Arabic, Hebrew and Persian). Direction marks also surround times and names; they are removed.
import path from 'node:path';
import { DropReason, ExportedChat, ExportedMessage, ChatImportError, DETECT_HEAD, NO_IDS, withoutDirectionMarks } from './chat_export';

export type DateOrder = 'dmy' | 'mdy' | 'ymd';
export const DATE_ORDERS: readonly DateOrder[] = ['dmy', 'mdy', 'ymd'];

const SPACE = '[^\\S\\r\\n]';
// Digits as the phone writes them: ASCII, Arabic-Indic (Arabic) or Extended Arabic-Indic (Persian, Urdu).
const DIGIT = '[0-9\\u0660-\\u0669\\u06f0-\\u06f9]';
// The direction mark that right-to-left locales write after each of the date's numbers ("18\u200f/3\u200f/2022").
const MARK = '[\\u200e\\u200f\\u061c]?';
// Groups: 1, 3, 4 the date's numbers as written, 2 the first separator, 5 a meridiem written before the time
// (Japanese, Chinese, Korean), 6-8 the time, 9 the a or p of AM/PM ("PM", "p. m.", "pm"), 10 Arabic's (ص, م).
const HEADER = new RegExp(
  `\\[?${MARK}(${DIGIT}{1,4})${MARK}([-./])${SPACE}?(${DIGIT}{1,4})${MARK}[-./]${SPACE}?(${DIGIT}{1,4})${MARK}\\.?[,،]?${SPACE}` +
    `(?:(午前|午後|上午|下午|오전|오후)${SPACE}?|[^\\d\\s[\\]]{1,5}${SPACE})?` +
    `(${DIGIT}{1,2})[:.](${DIGIT}{2})(?:[:.](${DIGIT}{2}))?(?:${SPACE}?(?:([aApP])\\.?${SPACE}?[mM]\\.?|([صم])))?` +
    `(?:\\]${SPACE}|${SPACE}?[-–]${SPACE}|:${SPACE})`,
  'y',
);
// iOS in locales that write the time first (Vietnamese): "[21:41:35, 27/3/22] Mom: Hi!". Groups: 1-3 the time, 4,
// 6, 7 the date's numbers, 5 the first separator.
const TIME_FIRST_HEADER = new RegExp(
  `\\[(${DIGIT}{1,2}):(${DIGIT}{2})(?::(${DIGIT}{2}))?,${SPACE}(${DIGIT}{1,4})([-./])(${DIGIT}{1,4})[-./](${DIGIT}{1,4})\\]${SPACE}`,
  'y',
);
const AFTERNOON = new Set(['午後', '下午', '오후', 'م']);

// WhatsApp's own words, by the language of the phone that exported the chat, as the app writes them; a language has
// a string here only where the app's own translations of two platforms agree or a real export shows it. media: a
// whole first line that stands for an attachment left out of the export (what follows it is the attachment's
// caption); omitted: the last word of the app's other placeholders in angle brackets ("<View once voice message
// omitted>"); attached: what follows a file's name in an export with media; document: an iPhone's placeholder for a
// document, after its name and a direction mark; deleted: a message deleted, by another and by the user; edited: the mark after an edited message's text; group: what only a group's notices say (that it
// was created or renamed, that the user was added to it); location: the word before a location's map link (Android
// writes it under the place's name and address, an iPhone after a direction mark), in any case; calls: a missed
// call, which Android writes as a message of the caller; waiting: a message the phone could not yet decrypt when the
// chat was exported; encrypted: the first sentence of the notice that the chat is end-to-end encrypted, which an
// iPhone writes as a message of the chat's name.
interface AppWords {
  media?: readonly string[];
  omitted?: readonly string[];
  attached?: readonly string[];
  document?: readonly string[];
  deleted?: readonly string[];
  edited?: readonly string[];
  group?: readonly string[];
  location?: readonly string[];
  calls?: readonly string[];
  waiting?: readonly string[];
  encrypted?: readonly string[];
}

const APP_WORDS: Readonly<Record<string, AppWords>> = {
  en: {
    encrypted: ['Messages and calls are end-to-end encrypted', 'Messages to this chat and calls are now secured with end-to-end encryption', 'Messages to this group are now secured with end-to-end encryption', 'Messages you send to this chat and calls are now secured with end-to-end encryption', 'Messages you send to this group are now secured with end-to-end encryption'],
    media: ['<Media omitted>', 'live location shared'],
    omitted: ['omitted'],
    attached: ['file attached'],
    document: ['document omitted'],
    deleted: ['This message was deleted', 'You deleted this message'],
    edited: ['<This message was edited>'],
    group: ['created group ', 'added you', 'You were added', 'changed the subject', "changed this group's icon", 'changed the group description', "joined using this group's invite link"],
    location: ['location'],
    calls: ['Missed voice call', 'Missed video call'],
    waiting: ['Waiting for this message. This may take a while.'],
  },
  de: {
    encrypted: ['Nachrichten und Anrufe sind Ende-zu-Ende-verschlüsselt'],
    media: ['<Medien ausgeschlossen>'],
    location: ['Standort'],
    omitted: ['ausgeschlossen'],
    attached: ['Datei angehängt'],
    document: ['Dokument weggelassen'],
    deleted: ['Diese Nachricht wurde gelöscht', 'Du hast diese Nachricht gelöscht'],
    edited: ['<Diese Nachricht wurde bearbeitet>'],
    group: ['hat dich hinzugefügt', 'hat den Betreff '],
    calls: ['Verpasster Sprachanruf', 'Verpasster Videoanruf'],
    waiting: ['Warte auf diese Nachricht. Das kann einen Moment dauern.'],
  },
  es: {
    encrypted: ['Los mensajes y las llamadas están cifrados de extremo a extremo'],
    media: ['<Multimedia omitido>'],
    location: ['Ubicación'],
    omitted: ['omitido', 'omitida'],
    attached: ['archivo adjunto', 'archivo adjuntado'],
    document: ['documento omitido'],
    deleted: ['Se eliminó este mensaje', 'Eliminaste este mensaje'],
    edited: ['<Se editó este mensaje.>'],
    calls: ['Videollamada perdida'],
    waiting: ['Esperando el mensaje. Esto puede tomar tiempo.'],
    group: ['te añadió', 'creó el grupo '],
  },
  fr: {
    encrypted: ['Les messages et les appels sont chiffrés de bout en bout'],
    media: ['<Médias omis>'],
    location: ['Localisation'],
    omitted: ['omis'],
    attached: ['fichier joint'],
    document: ['document manquant'],
    deleted: ['Ce message a été supprimé', 'Vous avez supprimé ce message'],
    edited: ['<Ce message a été modifié>'],
    calls: ['Appel vocal manqué', 'Appel vidéo manqué'],
    waiting: ['En attente de ce message. Ceci pourrait prendre un moment.'],
    group: ['vous a ajouté', 'a créé le groupe '],
  },
  pt: {
    encrypted: ['As mensagens e as chamadas são protegidas com a criptografia de ponta a ponta', 'As mensagens e as chamadas são protegidas com a criptografia de ponta a ponta e ficam somente entre você e os participantes desta conversa', 'As mensagens e ligações são protegidas com a criptografia de ponta a ponta', 'As mensagens e chamadas são encriptadas ponto a ponto'],
    media: ['<Mídia oculta>', '<Arquivo de mídia oculto>'],
    location: ['Localização'],
    omitted: ['oculta', 'oculto'],
    attached: ['arquivo anexado', 'ficheiro anexado'],
    document: ['documento omitido', 'documento não revelado'],
    deleted: ['Esta mensagem foi apagada', 'Essa mensagem foi apagada', 'Você apagou esta mensagem', 'Mensagem apagada'],
    edited: ['<Mensagem editada>'],
    calls: ['Chamada de voz perdida', 'Chamada de vídeo perdida', 'Videochamada perdida', 'Ligação de voz perdida'],
    group: ['adicionou você', 'criou o grupo '],
  },
  it: {
    encrypted: ['I messaggi e le chiamate sono crittografati end-to-end'],
    media: ['<Media omessi>'],
    location: ['Posizione'],
    omitted: ['omessi'],
    attached: ['file allegato'],
    document: ['documento omesso'],
    deleted: ['Questo messaggio è stato eliminato', 'Hai eliminato questo messaggio'],
    edited: ['<Questo messaggio è stato modificato>'],
    calls: ['Chiamata vocale persa', 'Videochiamata persa'],
    waiting: ["In attesa del messaggio. Potrebbe volerci un po' di tempo."],
    group: ['ti ha aggiunto', 'ha creato il gruppo '],
  },
  nl: {
    encrypted: ['Berichten en gesprekken worden end-to-end versleuteld'],
    media: ['<Media weggelaten>'],
    location: ['locatie'],
    omitted: ['weggelaten'],
    attached: ['bestand bijgevoegd'],
    deleted: ['Dit bericht is verwijderd', 'Je hebt dit bericht verwijderd', 'U hebt dit bericht verwijderd'],
    waiting: ['Wachten op dit bericht. Dit kan even duren.'],
    group: ['heeft u toegevoegd', 'U bent toegevoegd'],
  },
  ru: {
    encrypted: ['Сообщения и звонки защищены сквозным шифрованием'],
    media: ['<Без медиафайлов>'],
    location: ['местоположение'],
    attached: ['файл добавлен'],
    document: ['документ отсутствует'],
    deleted: ['Данное сообщение удалено', 'Вы удалили данное сообщение'],
    calls: ['Пропущенный аудиозвонок', 'Пропущенный видеозвонок'],
    waiting: ['Ожидание сообщения. Это может занять некоторое время.'],
    group: ['добавил(-а) вас', 'создал(-а) группу '],
  },
  uk: {
    encrypted: ['Повідомлення й дзвінки захищено наскрізним шифруванням'],
    media: ['<Медіа пропущено>'],
    location: ['Розташування'],
    attached: ['файл додано'],
    document: ['документ пропущено'],
    deleted: ['Це повідомлення було видалено', 'Ви видалили це повідомлення'],
    calls: ['Пропущений аудіодзвінок', 'Пропущений відеодзвінок'],
    waiting: ['Очікування повідомлення. Це може зайняти деякий час.'],
    group: ['додав(-ла) вас'],
  },
  tr: {
    encrypted: ['Mesajlar ve aramalar uçtan uca şifrelidir'],
    media: ['<Medya dahil edilmedi>'],
    attached: ['dosya ekli'],
    deleted: ['Bu mesaj silindi', 'Bu mesajı sildiniz'],
    calls: ['Cevapsız sesli arama', 'Cevapsız görüntülü arama'],
    waiting: ['Mesaj bekleniyor. Bu biraz zaman alabilir.'],
    group: ['sizi ekledi', 'Eklendiniz', 'grubunu oluşturdu'],
  },
  id: {
    encrypted: ['Pesan dan panggilan terenkripsi secara end-to-end'],
    media: ['<Media tidak disertakan>'],
    location: ['Lokasi'],
    attached: ['file terlampir'],
    document: ['dokumen tidak disertakan'],
    deleted: ['Pesan ini telah dihapus', 'Pesan ini dihapus', 'Anda menghapus pesan ini'],
    calls: ['Panggilan suara tak terjawab', 'Panggilan video tak terjawab'],
    waiting: ['Menunggu pesan ini. Ini mungkin membutuhkan waktu beberapa saat.'],
    group: ['menambahkan Anda', 'membuat grup '],
  },
  pl: {
    media: ['<Pominięto multimedia>'],
    attached: ['plik załączony', 'załączony plik'],
    deleted: ['Ta wiadomość została usunięta', 'Usunięto tę wiadomość'],
    calls: ['Nieodebrane poł. wideo'],
    waiting: ['Oczekiwanie na tę wiadomość. To może chwilę potrwać.'],
    group: ['dodał(a) Cię', 'utworzył(a) grupę '],
  },
  cs: {
    media: ['<Média vynechány>'],
    location: ['poloha'],
    attached: ['soubor byl přiložen'],
    document: ['dokument vynechán'],
    deleted: ['Tato zpráva byla odstraněna', 'Tuto zprávu jste odstranil/a'],
    calls: ['Zmeškaný hovor', 'Zmeškaný videohovor'],
    group: ['vás přidal/a', 'vytvořil/a skupinu '],
  },
  ar: {
    media: ['<تم استبعاد الوسائط>'],
    location: ['موقع'],
    attached: ['الملف مرفق'],
    document: ['لم يتم إدراج المستند'],
    deleted: ['تم حذف هذه الرسالة', 'لقد حذفت هذه الرسالة', 'لقد حذَفت هذه الرسالة', 'أنت حذفت هذه الرسالة'],
    calls: ['مكالمة صوتية فائتة', 'مكالمة فيديو فائتة'],
    waiting: ['في انتظار هذه الرسالة، قد يستغرق ذلك بعض الوقت.'],
    group: ['أضافك', 'تمت إضافتك', 'أنشأ مجموعة '],
  },
  fa: {
    deleted: ['شما این پیام را حذف کردید'],
    calls: ['تماس صوتی پاسخ داده نشده'],
    waiting: ['در انتظار برای این پیام. ممکن است قدری طول بکشد.'],
  },
  he: { attached: ['קובץ מצורף'], deleted: ['הודעה זו נמחקה'], calls: ['שיחה קולית שלא נענתה', 'שיחת וידאו שלא נענתה'] },
  ja: {
    encrypted: ['メッセージと通話はエンドツーエンド暗号化されています'],
    attached: ['添付ファイル有り'],
    location: ['位置情報'],
    document: ['ドキュメントは含まれていません'],
    deleted: ['このメッセージは削除されました', 'このメッセージを削除しました'],
    calls: ['ビデオ通話不在着信'],
    waiting: ['メッセージを待っています。しばらく時間がかかることがあります。'],
    group: ['があなたを追加しました', 'がグループ「'],
  },
  ko: {
    encrypted: ['메시지 및 전화는 종단간 암호화되어 안전합니다'],
    media: ['<미디어 파일 제외됨>'],
    attached: ['파일 첨부됨'],
    deleted: ['이 메시지는 삭제되었습니다', '삭제한 메시지입니다'],
    calls: ['부재중 전화', '부재중 영상통화'],
    waiting: ['메시지 암호화 대기중입니다. 다소 시간이 소요될 수 있습니다.'],
    group: ['그룹을 만들었습니다'],
  },
  zh: {
    media: ['<省略影音内容>'],
    attached: ['文件附件', '附件檔案'],
    deleted: ['此訊息已刪除', '您已刪除此訊息'],
    calls: ['未接语音通话', '未接视频通话', '未接語音通話', '未接視像通話'],
    waiting: ['正在等待訊息，此可能需要一段時間。'],
    group: [' 添加了您', ' 创建了 '],
  },
  // ड़ as the app writes it, one character (U+095C), which NFC would split in two.
  hi: { document: ['डॉक्यूमेंट छो\u095cा गया'], location: ['लोकेशन'] },
  vi: {
    attached: ['tệp đính kèm'],
    location: ['Vị trí'],
    document: ['đã bỏ qua tài liệu'],
    deleted: ['Tin nhắn này đã bị xóa', 'Bạn đã xoá tin nhắn này'],
    group: ['đã thêm bạn', 'Bạn đã được thêm', 'đã tạo nhóm '],
    calls: ['Cuộc gọi nhỡ', 'Cuộc gọi nhỡ video'],
  },
};

function appWords(kind: keyof AppWords): string[] {
  return Object.values(APP_WORDS).flatMap((words) => words[kind] ?? []);
}

function alternatives(strings: readonly string[]): string {
  return strings.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
}

// The file an iPhone's export with media names, its kind (`kind`) after its number.
function iPhoneFile(kind: string): string {
  return `<[^<>:\\n]{1,30} ?: \\d{8}-${kind}[^<>\\n]*>`;
}

// An attachment, as any phone writes it: a language's placeholder, or one in angle brackets that ends in its
// "omitted" (an older iPhone's "<\u200eimage omitted>" too); a file's name, which may hold spaces (a contact's card
// is named after the contact: "Ade D.vcf"), or a name without an extension and without spaces (a document named so,
// "DOC-20220602-WA0003"), and "(file attached)", or, on an older iPhone, its file as WhatsApp
// numbered them then and a word in angle brackets ("2015-08-04-PHOTO-00004762.jpg <attached>"). And "null", older
// Android's photo or video to view once.
const MEDIA = new RegExp(
  `^(?:${alternatives(appWords('media'))}|<[^<>\\n]{1,60} (?:${alternatives(appWords('omitted'))})>|` +
    `(?:[^\\n]+\\.\\w{2,5}|\\S+) \\((?:${alternatives(appWords('attached'))})\\)|\\d{4}-\\d{2}-\\d{2}-[A-Z]+-\\d{8}\\.\\w{2,5} <[^<>\\n]{1,30}>|null)$`,
  'i',
);
// An iPhone's photo, video, voice message, GIF or sticker: its placeholder ("image omitted"), after a direction mark
// as all the app's words there, or, in an export with media, its file in the app's language ("<attached:
// 00000016-PHOTO-2024-03-04-18-40-00.jpg>", "<Anhang: ...>", "<pièce jointe : ...>"), numbered as WhatsApp numbers
// them; either after the caption, if any, which is kept. The same words typed, without the mark, are a message.
// The caption ends where a run of spaces begins, which is then tried once, not from each of its spaces (quadratic in
// the run); EDITED's run likewise.
const IPHONE_PLACEHOLDER = '(?:image|video|audio|sticker|GIF|Contact card|Video note) omitted';
const IPHONE_MEDIA = new RegExp(
  `^([\\s\\S]*?)(?<!\\s)\\s*(?:[\u200e\u200f]+${IPHONE_PLACEHOLDER}|` +
    `[\u200e\u200f]*${iPhoneFile('(?:PHOTO|VIDEO|AUDIO|GIF|STICKER)-')})$`,
  'i',
);
// An iPhone's document: its placeholder after a direction mark, alone or after the document's name ("report.pdf •
// 3 pages \u200edocument omitted"; an older iPhone's in angle brackets, "<\u200edocument omitted>"), or its file,
// which may lack the mark. The name is no caption: dropped too.
const IPHONE_DOCUMENT = new RegExp(
  `^(?:(?:[^\\n]* )?(?:[\u200e\u200f]+(?:${alternatives(appWords('document'))})|<[\u200e\u200f]*(?:${alternatives(appWords('document'))})>)|(?:(?:[^\\n]* )?[\u200e\u200f]+)?${iPhoneFile('')})$`,
  'i',
);
// An older iPhone's placeholder, in an export that marks none of the app's words: the whole message.
const UNMARKED_IPHONE_MEDIA = new RegExp(`^(?:${IPHONE_PLACEHOLDER}|${alternatives(appWords('document'))})$`, 'i');
const DELETED = new RegExp(`^(?:${alternatives(appWords('deleted'))})[.。]?$`, 'i');
const EDITED = new RegExp(`(?<![\\s\u200e\u200f])[\\s\u200e\u200f]*(?:${alternatives(appWords('edited'))})$`);
const GROUP_NOTICE = new RegExp(alternatives(appWords('group')));
const CALL = new RegExp(`^(?:${alternatives(appWords('calls'))})$`, 'i');
// A message the phone could not yet decrypt when the chat was exported: its words are not in the export.
const WAITING = new RegExp(`^(?:${alternatives(appWords('waiting'))})$`);
// The notice that opens a chat, its first sentence whole, whatever follows it ("Tap to learn more.").
const ENCRYPTED = new RegExp(`^(?:${alternatives(appWords('encrypted'))})(?:[.。]|$)`);
// A group's notices as an older iPhone wrote them, without a direction mark, as messages of the group's name
// ("Family: Mom added Dad"), in the languages whose notice that the chat is encrypted is known: each the whole text,
// a name where NAME stands, a group's name in quotation marks where QUOTED. Both are bounded (a list of names added
// is at most a few hundred characters), so that a long message is tried in as many ways as a short one.
const NAME = '[^\\n]{1,300}';
const QUOTED = '[“"«„「\'][^\\n]{0,300}[”"»“」\']';
const UNMARKED_GROUP_NOTICES: readonly string[] = [
  // en
  `${NAME} created group ${QUOTED}`, `${NAME} added ${NAME}`, `${NAME} removed ${NAME}`, `${NAME} left`,
  `${NAME} changed the subject (?:from ${QUOTED} )?to ${QUOTED}`, `${NAME} changed this group's icon`, `${NAME} deleted this group's icon`,
  `${NAME} changed the group description`, `${NAME} joined using this group's invite link`, "You're now an admin",
  // de
  `${NAME} hat die Gruppe ${QUOTED} erstellt`, `${NAME} hat ${NAME} hinzugefügt`, `${NAME} hat ${NAME} entfernt`, `${NAME} hat die Gruppe verlassen`,
  `${NAME} hat den Betreff (?:von ${QUOTED} )?zu ${QUOTED} geändert`, `${NAME} hat das Gruppenbild geändert`,
  // es
  `${NAME} creó el grupo ${QUOTED}`, `${NAME} añadió a ${NAME}`, `${NAME} eliminó a ${NAME}`, `${NAME} salió del grupo`,
  `${NAME} cambió el asunto (?:de ${QUOTED} )?a ${QUOTED}`, `${NAME} cambió el ícono de este grupo`,
  // fr
  `${NAME} a créé le groupe ${QUOTED}`, `${NAME} a ajouté ${NAME}`, `${NAME} a retiré ${NAME}`, `${NAME} est parti(?:e)?`,
  `${NAME} a modifié le sujet (?:de ${QUOTED} )?en ${QUOTED}`, `${NAME} a changé l'icône de ce groupe`,
  // pt
  `${NAME} criou o grupo ${QUOTED}`, `${NAME} adicionou ${NAME}`, `${NAME} removeu ${NAME}`, `${NAME} saiu`,
  `${NAME} mudou o assunto (?:de ${QUOTED} )?para ${QUOTED}`, `${NAME} mudou a imagem deste grupo`,
  // it
  `${NAME} ha creato il gruppo ${QUOTED}`, `${NAME} ha aggiunto ${NAME}`, `${NAME} ha rimosso ${NAME}`, `${NAME} è uscit[oa]`,
  `${NAME} ha cambiato l'oggetto (?:da ${QUOTED} )?a ${QUOTED}`, `${NAME} ha cambiato l'immagine di questo gruppo`,
  // nl
  `${NAME} heeft groep ${QUOTED} aangemaakt`, `${NAME} heeft ${NAME} toegevoegd`, `${NAME} heeft ${NAME} verwijderd`, `${NAME} heeft de groep verlaten`,
  `${NAME} heeft het onderwerp gewijzigd (?:van ${QUOTED} )?naar ${QUOTED}`, `${NAME} heeft het groepspictogram gewijzigd`,
  // ru
  `${NAME} создал\\(-а\\) группу ${QUOTED}`, `${NAME} добавил\\(-а\\) ${NAME}`, `${NAME} удалил\\(-а\\) ${NAME}`, `${NAME} вышел\\(-ла\\)`,
  `${NAME} изменил\\(-а\\) тему (?:с ${QUOTED} )?на ${QUOTED}`, `${NAME} изменил\\(-а\\) изображение группы`,
  // uk
  `${NAME} створив\\(-ла\\) групу ${QUOTED}`, `${NAME} додав\\(-ла\\) ${NAME}`, `${NAME} видалив\\(-ла\\) ${NAME}`, `${NAME} вийшов\\(-ла\\)`,
  `${NAME} змінив\\(-ла\\) тему (?:з ${QUOTED} )?на ${QUOTED}`,
  // tr
  `${NAME} ${QUOTED} grubunu oluşturdu`, `${NAME}, ${NAME} kişisini ekledi`, `${NAME}, ${NAME} kişisini çıkardı`, `${NAME} ayrıldı`,
  `${NAME} konuyu ${QUOTED} olarak değiştirdi`, `${NAME} bu grubun simgesini değiştirdi`,
  // id
  `${NAME} membuat grup ${QUOTED}`, `${NAME} menambahkan ${NAME}`, `${NAME} mengeluarkan ${NAME}`, `${NAME} keluar`,
  `${NAME} mengubah subjek (?:dari ${QUOTED} )?menjadi ${QUOTED}`, `${NAME} mengubah ikon grup ini`,
  // ja
  `${NAME}がグループ${QUOTED}を作成しました`, `${NAME}が${NAME}を追加しました`, `${NAME}が${NAME}を削除しました`, `${NAME}が退出しました`,
  `${NAME}がグループ名を${QUOTED}に変更しました`, `${NAME}がこのグループのアイコンを変更しました`,
  // ko
  `${NAME}님이 ${NAME}님을 초대했습니다`, `${NAME}님이 나갔습니다`, `${NAME}님이 ${NAME}님을 내보냈습니다`, `${NAME}님이 그룹 아이콘을 변경했습니다`,
];
const UNMARKED_GROUP_NOTICE = new RegExp(`^(?:${UNMARKED_GROUP_NOTICES.join('|')})[.。]?$`);
// A location shared: its place's name and address, if any, each on a line, then its map link; on an iPhone after a
// direction mark, without which the same words were typed, and which follows the place's address after two spaces
// ("Big Ben, London  \u200eLocation: https://..."). Group 1: the marks before the link's word. Found from the end, as
// a pattern of the lines before it would try every way of cutting a long message into lines; one space before the
// mark is enough to find it, where a run of them would be tried from each of its spaces (quadratic in the run).
const LOCATION = new RegExp(`(?:^|\\n|${SPACE}(?=[\u200e\u200f]))([\u200e\u200f]*)(?:${alternatives(appWords('location'))}): https://maps\\.google\\.com/\\?q=-?[\\d.]+,-?[\\d.]+$`, 'i');
// The most lines of a place's name and address before its location.
const LOCATION_LINES = 2;
// A poll: "POLL:", its question, and an "OPTION:" line for each answer with its votes: no words of a conversation.
const POLL = /^POLL:\n[^\n]*(?:\nOPTION: [^\n]*)+$/;
// "WhatsApp Chat with Mom.txt" in the languages of the phones that export most, as the app's translations name it
// ("Czat WhatsApp z Mom", "Mom ile WhatsApp Sohbeti", "WhatsApp 与 Mom 的对话"); iOS's "WhatsApp Chat - Mom.zip"
// unzips to a folder of that name. A second export beside the first is "... (1)".
const TITLE_IN_NAME = [
  /WhatsApp.*?(?: (?:with|mit|con|avec|com|met|dengan|с(?: контактом)?|з|với|z|s uživatelem) | - )(.+)$/i,
  /^دردشة واتساب مع (.+)$/,
  /^(.+?)(?: ile WhatsApp Sohbeti|とのWhatsAppチャット|님과의 WhatsApp 대화)$/,
  /^WhatsApp [与與] (.+) 的(?:对话|對話)$/,
];

// Whether a text is a WhatsApp export: its first non-blank line starts with a message's date and time.
export function looksLikeWhatsApp(text: string): boolean {
  const first = /\S/.exec(text.slice(0, DETECT_HEAD));
  if (!first) return false;
  const lineStart = text.lastIndexOf('\n', first.index) + 1;
  return headerAt(text, lineStart) !== null;
}

// A message's date and time as written at the start of a line: the date's three numbers in the order written, the
// time on the 24-hour clock, whether they are in brackets (as an iPhone writes them), and where the sender (or notice)
// starts.
interface Header {
  first: number;
  second: number;
  third: number;
  dotted: boolean;
  twelveHour: boolean;
  hour: number;
  minute: number;
  seconds: number;
  bracketed: boolean;
  end: number;
}

function headerAt(text: string, lineStart: number): Header | null {
  const from = afterMarks(text, lineStart);
  HEADER.lastIndex = from;
  const match = HEADER.exec(text);
  if (match) {
    const meridiem = match[9] ? match[9].toLowerCase() : (match[5] ?? match[10]) ? (AFTERNOON.has(match[5] ?? match[10]) ? 'p' : 'a') : '';
    let hour = numberOf(match[6]);
    if (meridiem) hour = (hour % 12) + (meridiem === 'p' ? 12 : 0);
    return {
      first: numberOf(match[1]),
      second: numberOf(match[3]),
      third: numberOf(match[4]),
      dotted: match[2] === '.',
      twelveHour: meridiem !== '',
      hour,
      minute: numberOf(match[7]),
      seconds: match[8] ? numberOf(match[8]) : 0,
      bracketed: text.charCodeAt(from) === 0x5b,
      end: HEADER.lastIndex,
    };
  }
  TIME_FIRST_HEADER.lastIndex = from;
  const timeFirst = TIME_FIRST_HEADER.exec(text);
  if (!timeFirst) return null;
  return {
    first: numberOf(timeFirst[4]),
    second: numberOf(timeFirst[6]),
    third: numberOf(timeFirst[7]),
    dotted: timeFirst[5] === '.',
    twelveHour: false,
    hour: numberOf(timeFirst[1]),
    minute: numberOf(timeFirst[2]),
    seconds: timeFirst[3] ? numberOf(timeFirst[3]) : 0,
    bracketed: true,
    end: TIME_FIRST_HEADER.lastIndex,
  };
}

// The value of digits of any of the scripts DIGIT allows.
function numberOf(digits: string): number {
  let value = 0;
  for (let i = 0; i < digits.length; i++) {
    const code = digits.charCodeAt(i);
    value = value * 10 + code - (code >= 0x06f0 ? 0x06f0 : code >= 0x0660 ? 0x0660 : 0x30);
  }
  return value;
}

// Where the direction marks (and byte-order mark) that start at `from` end.
function afterMarks(text: string, from: number): number {
  let at = from;
  while (isMark(text.charCodeAt(at))) at++;
  return at;
}

function isMark(code: number): boolean {
  return code === 0x200e || code === 0x200f || code === 0x061c || code === 0xfeff || (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069);
}

// One export, dated alone. An import reads every WhatsApp export first (readWhatsApp) and dates them together
// (datedWhatsApp), as exports of one chat must read their dates alike for their overlap to be found.
export function parseWhatsApp(file: string, text: string, dateOrder?: DateOrder, warnings: string[] = []): ExportedChat {
  const chat = readWhatsApp(file, text);
  const [error] = datedWhatsApp([chat], dateOrder, warnings);
  if (error) throw error;
  return chat;
}

// The dates of an export's messages as written, four numbers a message: its date's three and its second of the day.
export interface WhatsAppDates {
  numbers: readonly number[];
  twelveHour: boolean;
  dotted: boolean;   // 31.12.20: the locales that write dates so write the day first
}

// One pass over the lines, then one over the messages, whose senders are told by every message's first line; the
// messages' times are NaN, their dates in the chat's `undated`.
export function readWhatsApp(file: string, text: string): ExportedChat {
  const spans: [from: number, end: number, line: number, bracketed: boolean][] = [];
  const dates: number[] = [];
  const state: FileState = { senders: new Map(), openings: new Map(), group: false, unmarked: !DIRECTION_MARK.test(text), encryptedBy: new Set() };
  let twelveHour = false;
  let dotted = false;
  let messageStart = -1;
  let messageLine = 0;
  let messageBracketed = false;
  let previousEnd = 0;
  let line = 0;
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    line++;
    const header = headerAt(text, start);
    if (header) {
      if (messageStart >= 0) spans.push([messageStart, previousEnd, messageLine, messageBracketed]);
      for (const opening of senderEnds(text.slice(header.end, end).trimEnd()).map((colon) => text.slice(header.end, header.end + colon))) {
        state.openings.set(opening, (state.openings.get(opening) ?? 0) + 1);
      }
      const { hour, minute, seconds } = header;
      if (hour > 23 || minute > 59 || seconds > 59) throw new ChatImportError(file, line, `a time that does not exist: ${text.slice(start, header.end).trim()}`);
      if (header.twelveHour) twelveHour = true;
      if (header.dotted) dotted = true;
      dates.push(header.first, header.second, header.third, hour * 3600 + minute * 60 + seconds);
      messageStart = header.end;
      messageLine = line;
      messageBracketed = header.bracketed;
    } else if (messageStart < 0 && text.slice(start, end).trim() !== '') {
      throw new ChatImportError(file, line, 'not a WhatsApp export: a message line starts with its date and time ("12/31/20, 10:15 PM - Mom: Hi!" or "[31.12.20, 22:15:03] Mom: Hi!")');
    }
    previousEnd = end;
    start = end + 1;
  }
  if (messageStart >= 0) spans.push([messageStart, previousEnd, messageLine, messageBracketed]);
  const messages = spans.map(([from, end, at, bracketed]) => readMessage(text, from, end, at, bracketed, state));
  for (const chatName of state.encryptedBy) dropUnmarkedGroupNotices(messages, chatName, state);
  const { title, folder } = chatTitle(file);
  // The app names the file after the chat, and a second export of it beside the first "... (1)": exports of one
  // chat's name in one folder are one chat, their overlap dropped as duplicates (train_output.ts). A file renamed
  // so that its name says no chat is a chat of its own.
  const key = title === '' ? `whatsapp:${path.resolve(file)}` : `whatsapp:${folder}\0${title}`;
  // A group where one other member wrote would otherwise pass for a chat with that member.
  return { format: 'whatsapp', file, key, title, group: state.group ? true : null, skip: null, myIds: NO_IDS, messages, undated: { numbers: dates, twelveHour, dotted } };
}

// What the messages of a file tell of each other: the senders' names as written and as read, how many messages'
// first lines open with each text that may be a sender (senderEnds), whether a notice says that the chat is a
// group, and whether the file holds no direction mark at all: an older iPhone's export, which marked none of the
// app's words, so that on an iPhone too the app's words there are told from typed ones only as on Android.
interface FileState {
  senders: Map<string, string>;
  openings: Map<string, number>;
  group: boolean;
  unmarked: boolean;
  encryptedBy: Set<string>;   // in an unmarked file, who wrote the notice that the chat is encrypted: the chat's name
}

// An older iPhone wrote a group's notices as messages of the group's name, which also wrote the notice that the chat
// is encrypted: "Family: Mom added Dad". That sender is the group where two others or more wrote beside it and all it
// wrote besides reads as the notices, none of which is then a message. A one-to-one chat's notice is written as the
// other person, the only one beside the user: their messages are kept, whatever words they hold.
function dropUnmarkedGroupNotices(messages: readonly ExportedMessage[], chatName: string, state: FileState): void {
  const others = new Set(messages.filter((message) => message.sender !== chatName && message.dropped === null).map((message) => message.sender));
  const written = messages.filter((message) => message.sender === chatName && message.dropped === null);
  if (others.size < 2 || written.length === 0 || !written.every((message) => UNMARKED_GROUP_NOTICE.test(message.text))) return;
  for (const message of written) {
    message.dropped = 'system';
    message.text = '';
  }
  state.group = true;
}

const DIRECTION_MARK = /[\u200e\u200f]/;

// Where the sender may end in a message's first line: at each ": " before a quotation opens (Android's notices have
// no sender, but may quote a name that holds ": ": Mom changed the subject to "Fam: 2021").
function senderEnds(headerLine: string): number[] {
  const ends: number[] = [];
  for (let colon = headerLine.indexOf(': '); colon >= 0 && ends.length < MAX_SENDER_COLONS; colon = headerLine.indexOf(': ', colon + 2)) {
    if (opensQuote(headerLine.slice(0, colon))) break;
    ends.push(colon);
  }
  return ends;
}

// The most ": " a sender's name is looked for across ("Work: Bob").
const MAX_SENDER_COLONS = 3;

// Where the sender ends: a name may hold ": " ("Work: Bob: hi"), as may a text ("Mom: note: milk"). The sender is
// the opening that begins the most other messages too, the longer of two that begin as many ("Work: Bob" begins every
// message "Work" begins); an opening of this message alone tells nothing, and the first ": " ends the sender.
function senderEnd(headerLine: string, openings: ReadonlyMap<string, number>): number {
  const ends = senderEnds(headerLine);
  let best = ends.length > 0 ? ends[0] : -1;
  let most = 1;
  for (const colon of ends) {
    const count = openings.get(headerLine.slice(0, colon)) ?? 0;
    if (count > 1 && count >= most) {
      best = colon;
      most = count;
    }
  }
  return best;
}

// The message whose sender (or notice) starts at `from` and whose last line ends at `end`, its header `bracketed` or
// not. Its time comes later; NaN until then keeps the field a double, as it will be, rather than a small integer to
// convert in every message.
function readMessage(text: string, from: number, end: number, line: number, bracketed: boolean, state: FileState): ExportedMessage {
  let lineEnd = text.indexOf('\n', from);
  if (lineEnd < 0 || lineEnd > end) lineEnd = end;
  const headerLine = text.slice(from, lineEnd).trimEnd();
  let colon = senderEnd(headerLine, state.openings);
  if (colon < 0) {
    if (!headerLine.endsWith(':')) {
      if (GROUP_NOTICE.test(headerLine)) state.group = true;
      return { time: NaN, sender: '', senderIds: NO_IDS, mine: null, text: '', dropped: 'system', line };
    }
    colon = headerLine.length - 1;
  }
  const written = headerLine.slice(0, colon);
  let sender = state.senders.get(written);
  if (sender === undefined) {
    sender = withoutDirectionMarks(written).replace(/^~\s*/, '').trim();
    state.senders.set(written, sender);
  }
  const bodyStart = Math.min(from + colon + 2, end);
  // On iOS the app's own words open with a direction mark, left-to-right or, in the right-to-left languages, right-
  // to-left: there the same words without it ("Missed voice call", "document omitted") were typed. Android writes
  // its words (but for a file's name) without a mark, as an older iPhone did (state.unmarked), and nothing tells them
  // from the same words typed. Marks inside the text go where every app's do, when it is written (train_output.ts).
  const notice = text.charCodeAt(bodyStart) === 0x200e || text.charCodeAt(bodyStart) === 0x200f;
  const appMayHaveWritten = notice || !bracketed || state.unmarked;
  // With the marks that open it, which tell an iPhone's placeholders from the same words typed.
  const firstLine = text.slice(bodyStart, lineEnd).trim();
  const body = text.slice(afterMarks(text, bodyStart), end).trim();
  const newline = body.indexOf('\n');
  let kept = body;
  let dropped: DropReason | null = null;
  const iPhoneMedia = IPHONE_MEDIA.exec(text.slice(bodyStart, end).trim());
  const location = LOCATION.exec(body);
  if (iPhoneMedia) {
    kept = iPhoneMedia[1].trim();
    if (kept === '') dropped = 'media';
  } else if (MEDIA.test(firstLine.slice(afterMarks(firstLine, 0))) || IPHONE_DOCUMENT.test(firstLine) || (bracketed && state.unmarked && UNMARKED_IPHONE_MEDIA.test(firstLine))) {
    kept = newline < 0 ? '' : body.slice(newline + 1).trim();
    if (kept === '') dropped = 'media';
  } else if (POLL.test(body) || (location !== null && (appMayHaveWritten || location[1] !== '') && body.slice(0, location.index).split('\n').length <= LOCATION_LINES)) dropped = 'media';
  else if (appMayHaveWritten && DELETED.test(body)) dropped = 'deleted';
  else if (appMayHaveWritten && CALL.test(body)) dropped = 'call';
  else if (appMayHaveWritten && WAITING.test(body)) dropped = 'unreadable';
  else if (appMayHaveWritten && ENCRYPTED.test(body)) {
    dropped = 'system';
    if (state.unmarked) state.encryptedBy.add(sender);
  }
  else if (notice) {
    dropped = 'system';
    if (GROUP_NOTICE.test(body)) state.group = true;
  }
  else kept = body.replace(EDITED, '');
  return { time: NaN, sender, senderIds: NO_IDS, mine: null, text: dropped ? '' : kept, dropped, line };
}

// Whether `text` ends inside a quotation, in the quotation marks of the languages WhatsApp writes its notices in
// ("...", “...”, «...», „...“, 「...」): a sender's name holds none open.
function opensQuote(text: string): boolean {
  if ((text.split('"').length - 1) % 2 === 1) return true;
  const open = Math.max(...OPENING_QUOTES.map((quote) => text.lastIndexOf(quote)));
  return open >= 0 && !CLOSING_QUOTE.test(text.slice(open + 1));
}

const OPENING_QUOTES = ['“', '«', '„', '「', '『'];
const CLOSING_QUOTE = /[”»“」』]/;

// Year, month and day of message i's date under an order.
function dayOf(dates: readonly number[], i: number, order: DateOrder): [number, number, number] {
  const first = dates[4 * i];
  const second = dates[4 * i + 1];
  const third = dates[4 * i + 2];
  return order === 'ymd' ? [first, second, third] : order === 'dmy' ? [third, second, first] : [third, first, second];
}

// The times of the messages of the chats read by readWhatsApp, under `dateOrder` or the order their dates tell, and
// the problems found, a file's each. What a file's numbers allow decides its order (a first number over 31 is a year;
// over 12, a day): exports of phones of several locales may be imported together. Files of one chat (its exports
// "... (1)", whose overlap must be found) whose numbers allow both orders read theirs as the chat's other files say
// it is, if they agree, else as all of them go forward the most, as a chat's dates do, else month first with the
// 12-hour clock's countries (a warning names them and --date-order). Another chat says nothing of a file's order.
export function datedWhatsApp(chats: readonly ExportedChat[], dateOrder: DateOrder | undefined, warnings: string[]): ChatImportError[] {
  const errors: ChatImportError[] = [];
  const orders = new Map<ExportedChat, DateOrder[]>();
  for (const chat of chats) {
    if (chat.undated === undefined) continue;
    try {
      orders.set(chat, dateOrder ? [dateOrder] : possibleOrders(chat, chat.undated.numbers));
    } catch (err) {
      errors.push(err as ChatImportError);
    }
  }
  const byChat = new Map<string, [ExportedChat, DateOrder[]][]>();
  for (const entry of orders) {
    const files = byChat.get(entry[0].key);
    if (files) files.push(entry);
    else byChat.set(entry[0].key, [entry]);
  }
  for (const files of byChat.values()) {
    const open = files.filter(([, possible]) => possible.length > 1).map(([chat]) => chat);
    const shared = open.length === 0 ? 'dmy' : sharedOrder(open, files.map(([, possible]) => possible), warnings);
    for (const [chat, possible] of files) {
      try {
        setTimes(chat, possible.length > 1 ? shared : possible[0]);
      } catch (err) {
        errors.push(err as ChatImportError);
      }
    }
  }
  return errors;
}

// The orders a file's dates can be read in.
function possibleOrders(chat: ExportedChat, dates: readonly number[]): DateOrder[] {
  let dayFirstPossible = true;
  let monthFirstPossible = true;
  for (let i = 0; i < chat.messages.length; i++) {
    if (dates[4 * i] > 31) return ['ymd'];
    if (dates[4 * i + 1] > 12) dayFirstPossible = false;
    if (dates[4 * i] > 12) monthFirstPossible = false;
    if (!dayFirstPossible && !monthFirstPossible) {
      throw new ChatImportError(chat.file, chat.messages[i].line, 'dates in no order a phone writes them (neither day nor month first); give it with --date-order');
    }
  }
  if (dayFirstPossible && monthFirstPossible) return (chat.undated as WhatsAppDates).dotted ? ['dmy'] : ['dmy', 'mdy'];
  return dayFirstPossible ? ['dmy'] : ['mdy'];
}

// The order of the files whose numbers allow both, `possible` being every file's orders.
function sharedOrder(open: readonly ExportedChat[], possible: readonly DateOrder[][], warnings: string[]): 'dmy' | 'mdy' {
  const told = new Set(possible.filter((orders) => orders.length === 1 && orders[0] !== 'ymd').map((orders) => orders[0]));
  if (told.size === 1) return told.has('dmy') ? 'dmy' : 'mdy';
  const backwards = (order: 'dmy' | 'mdy'): number => {
    let count = 0;
    for (const chat of open) {
      const dates = (chat.undated as WhatsAppDates).numbers;
      let previous = -Infinity;
      for (let i = 0; i < chat.messages.length; i++) {
        const [year, month, day] = dayOf(dates, i, order);
        const key = year * 10000 + month * 100 + day;
        if (key < previous) count++;
        previous = key;
      }
    }
    return count;
  };
  const dayFirst = backwards('dmy');
  const monthFirst = backwards('mdy');
  if (dayFirst !== monthFirst) return dayFirst < monthFirst ? 'dmy' : 'mdy';
  const order = open.every((chat) => chat.undated?.twelveHour) ? 'mdy' : 'dmy';
  // Dates whose day is their month read the same either way.
  const differ = open.filter((chat) => (chat.undated as WhatsAppDates).numbers.some((n, i, numbers) => i % 4 === 0 && n !== numbers[i + 1]));
  if (differ.length > 0) {
    const shown = differ.slice(0, 3).map((chat) => chat.file).join(', ') + (differ.length > 3 ? `, and ${differ.length - 3} more` : '');
    warnings.push(`${shown}: dates that read as well day first as month first (3/4/24: 3 April or March 4), read ${order === 'mdy' ? 'month' : 'day'} first; if that is wrong, give the order with --date-order ${order === 'mdy' ? 'dmy' : 'mdy'}`);
  }
  return order;
}

// The messages' times under an order.
function setTimes(chat: ExportedChat, order: DateOrder): void {
  const dates = (chat.undated as WhatsAppDates).numbers;
  let dayKey = -1;
  let dayStart = 0;
  chat.messages.forEach((message, i) => {
    const [year, month, day] = dayOf(dates, i, order);
    if (month < 1 || month > 12 || day < 1 || day > 31) {
      throw new ChatImportError(chat.file, message.line, `a date that does not exist read as ${order} (${dates.slice(4 * i, 4 * i + 3).join('/')}); give the date order with --date-order`);
    }
    const key = year * 10000 + month * 100 + day;
    if (key !== dayKey) {
      dayKey = key;
      dayStart = Date.UTC(year < 100 ? 2000 + year : year, month - 1, day);
    }
    message.time = dayStart + dates[4 * i + 3] * 1000;
  });
  delete chat.undated;
}

// The chat's name, from the file's name or, for an iPhone's _chat.txt, from the folder or zip it came in; and the
// folder that holds what the name was read from.
function chatTitle(file: string): { title: string; folder: string } {
  const resolved = path.resolve(file);
  const fromName = titleIn(path.basename(file, path.extname(file)));
  if (fromName !== null) return { title: fromName, folder: path.dirname(resolved) };
  return { title: titleIn(path.basename(path.dirname(resolved)).replace(/\.zip$/i, '')) ?? '', folder: path.dirname(path.dirname(resolved)) };
}

function titleIn(name: string): string | null {
  const exported = name.replace(/ \(\d+\)$/, '');
  for (const pattern of TITLE_IN_NAME) {
    const match = pattern.exec(exported);
    if (match) return match[1].trim();
  }
  return null;
}
