// KakaoTalk's exported chat: a phone's Korean export (a message over several lines, a blank one among them; photos,
// emoticons and a deleted message dropped), a phone's English export of a group (its heading's member count, joins
// and leaves and the open chat's warning dropped), a computer's export (days between dashes, notices on lines of
// their own ending the message before them, CRLF lines), the newer phones' dates and 24-hour computers, and the
// format told by its content.
import t from 'tap';
import { looksLikeKakaoTalk, parseKakaoTalk } from '../../lib/import/kakaotalk';
import { NOT_AN_EXPORT, fixture, importFolder, importInto } from './helpers';

t.test("a phone's Korean export: the other person is the audience; media and deleted messages dropped", async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('kakaotalk', 'android-ko')], { me: ['Jane Doe'] });
  t.same(files, {
    '민지.train': [
      '0|민지|좋은 아침! <EOM>', '0|민지|오늘 점심 같이 먹을래? <EOM>', '1|민지|좋아 😊 12시 어때? <EOM>', '0|민지|이 집 어때? 맛집이래 줄이 길대 <EOM>',
      '1|민지|완전 좋아 <EOM>', '0|민지|도착했어 2층이야 <EOM>', '1|민지|고마워 잘 먹었어 ❤️ <EOM>',
    ],
  });
  t.match(summary, { formats: { kakaotalk: 1 }, read: 10, kept: 7, sent: 3, dropped: { media: 2, deleted: 1 } });
  const chat = parseKakaoTalk('KakaoTalkChats.txt', '민지 님과 카카오톡 대화\n저장한 날짜 : 2024년 1월 20일 오후 9:03\n\n\n2024년 1월 15일 오전 12:05\n' +
    '2024년 1월 15일 오전 12:05, 민지 : 자?\n2024년 1월 15일 오후 12:06, 민지 : 점심!\n\n둘째 줄\n\n2024년 1월 16일 화요일\n2024. 1. 16. 오후 3:04, 민지 : 안녕\n');
  t.same({ title: chat.title, group: chat.group }, { title: '민지', group: null });
  t.same(chat.messages.map((m) => [m.time, m.text, m.line]), [
    [Date.UTC(2024, 0, 15, 0, 5), '자?', 6], [Date.UTC(2024, 0, 15, 12, 6), '점심!\n\n둘째 줄', 7], [Date.UTC(2024, 0, 16, 15, 4), '안녕', 12],
  ], '오전 12 is midnight, 오후 12 noon; a day heading ends the message before it; newer phones\' dotted dates');
});

t.test("a phone's English export of a group: named by its heading, joins, leaves and the app's warning dropped", async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('kakaotalk', 'android-en')], { me: ['Jane Doe'] });
  t.same(files, {
    'trail-runners.train': [
      "0|Trail Runners|Morning! Who's in for the river loop? <EOM>", '1|Trail Runners|Me! Meet at the bridge at 9? <EOM>',
      "0|Trail Runners|Count me in, that's my old route <EOM>", '0|Trail Runners|14 km in 1:20 🏃 <EOM>', '1|Trail Runners|New record! <EOM>',
    ],
  });
  t.match(summary, { read: 8, kept: 5, dropped: { system: 2, media: 1 } });
  const newer = parseKakaoTalk('Talk_2024.3.20 21:03-1.txt', 'KakaoTalk Chats with Minho\nDate Saved : Mar 20, 2024 at 21:03\n\nMarch 3, 2024 at 12:15 PM, Minho : Hi\nMar 3, 2024 at 13:05, Minho : Lunch?\n');
  t.same({ title: newer.title, group: newer.group }, { title: 'Minho', group: null });
  t.same(newer.messages.map((m) => [m.time, m.sender, m.text]), [[Date.UTC(2024, 2, 3, 12, 15), 'Minho', 'Hi'], [Date.UTC(2024, 2, 3, 13, 5), 'Minho', 'Lunch?']]);
});

t.test("a newer phone's English export: a narrow no-break space before PM, and the region's \"p.m.\"", async (t) => {
  const text = [
    'KakaoTalk Chats with Minho', 'Date Saved : Mar 5, 2024 at 9:46\u202fAM', '',
    'Monday, March 4, 2024', 'March 4, 2024 at 8:54\u202fPM, Minho : Dinner at 7?', 'March 4, 2024 at 8:55\u202fPM, Jane : Sure',
    'March 4, 2024, 11:02 p.m., Minho : Good night', 'March 5, 2024, 12:10 a.m., Jane : night',
    '',
  ].join('\n');
  const { files } = await importFolder(t, { 'KakaoTalkChats.txt': text }, { me: ['Jane'] });
  t.same(files, { 'minho.train': ['0|Minho|Dinner at 7? <EOM>', '1|Minho|Sure <EOM>', '0|Minho|Good night <EOM>', '1|Minho|night <EOM>'] });
  t.same(parseKakaoTalk('KakaoTalkChats.txt', text).messages.map((m) => m.time), [
    Date.UTC(2024, 2, 4, 20, 54), Date.UTC(2024, 2, 4, 20, 55), Date.UTC(2024, 2, 4, 23, 2), Date.UTC(2024, 2, 5, 0, 10),
  ]);
});

t.test('an export of which no message is read is refused, naming the first line that is none', async (t) => {
  const text = 'KakaoTalk Chats with Minho\nDate Saved : Mar 5, 2024, 9:46\n\n4 March 2024 20:54, Minho : Hi\n';
  t.throws(() => parseKakaoTalk('KakaoTalkChats.txt', text), {
    name: 'ChatImportError',
    message: 'KakaoTalkChats.txt:4: not a KakaoTalk message line (its date and time, then the sender: "March 4, 2024, 8:54 PM, Ann : Hi", "[Ann] [8:54 PM] Hi"): "4 March 2024 20:54, Minho : Hi"',
  });
});

t.test("a computer's export: days between dashes, notices on lines of their own, messages of several lines", async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('kakaotalk', 'pc-ko')], { me: ['Jane Doe'] });
  t.same(files, {
    '등산-모임.train': [
      '0|등산 모임|내일 북한산 가실 분? <EOM>', '0|등산 모임|저요! 몇 시에 만나요? <EOM>', '1|등산 모임|저도 갈게요 8시 반 구파발역 어때요? <EOM>',
      '0|등산 모임|코스는 이걸로 https://example.com/bukhansan <EOM>', '0|등산 모임|오늘 최고였어요 🏔️ <EOM>', '1|등산 모임|다음엔 설악산! <EOM>',
    ],
  }, 'three people wrote: a group, named by its heading');
  t.match(summary, { read: 11, kept: 6, sent: 2, dropped: { system: 2, media: 3 } });
  const english = parseKakaoTalk('chat.txt', 'Minho with KakaoTalk\n--------------- Sunday, January 15, 2023 ---------------\n[Minho] [3:04 PM] Hello\n[테스트 [팀]] [20:36] ㅎㅇ\n[Jane] [12:10 AM] late\n');
  t.same(english.messages.map((m) => [m.time, m.sender, m.text]), [
    [Date.UTC(2023, 0, 15, 15, 4), 'Minho', 'Hello'], [Date.UTC(2023, 0, 15, 20, 36), '테스트 [팀]', 'ㅎㅇ'], [Date.UTC(2023, 0, 15, 0, 10), 'Jane', 'late'],
  ], 'English days and AM/PM, a 24-hour clock, brackets in a name');
  t.equal(english.title, '', 'no heading without the date it was saved');
});

t.test('a heading-less part of a computer\'s export is told by its content when its first message is a long paragraph', (t) => {
  const paragraph = '회의에서 나온 이야기를 정리했어요. '.repeat(300);
  t.ok(looksLikeKakaoTalk(`--------------- 2024년 3월 9일 토요일 ---------------\n[준호] [오전 9:12] ${paragraph}\n[Jane] [오전 9:13] 고마워\n`));
  t.end();
});

t.test('told by its content, in a folder beside other exports; a heading-less part of a computer\'s export too', async (t) => {
  const part = '--------------- 2024년 3월 9일 토요일 ---------------\n[준호] [오전 9:12] 안녕\n[Jane] [오전 9:13] 응\n';
  const notes = '--------------- shopping ---------------\nmilk\n';
  t.same([part, notes, '민지 님과 카카오톡 대화\n저장한 날짜 : 2024년 1월 20일 오후 9:03\n', '[12/31/20, 10:15:03 PM] Mom: Hi!\n'].map(looksLikeKakaoTalk), [true, false, true, false]);
  const { files, summary } = await importFolder(t, { 'part.txt': part, 'notes.txt': notes }, { me: ['Jane'] });
  t.same(files, { '준호.train': ['0|준호|안녕 <EOM>', '1|준호|응 <EOM>'] });
  t.match(summary.warnings, [NOT_AN_EXPORT]);
});
