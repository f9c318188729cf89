// Highlights the parts of a message that a search query matched, with the server's rules
// (crates/domain/src/search.rs): text and query in Unicode NFKC; words are runs of CJK
// characters (Han, kana, Hangul: the server's CJK_RANGES) and runs of other letters and
// digits; a CJK query word matches wherever it occurs in a CJK word, whatever its length;
// other words are compared lowercased and without accents, a query word of 3+ characters
// matching inside a word and a shorter one only a whole word. The result is built from text
// nodes and <mark> elements, never HTML.

// The server's CJK_RANGES, as a character class.
const CJK =
  '\u1100-\u11FF\u2E80-\u2FDF\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3038-\u303C' +
  '\u3041-\u3096\u3099-\u309F\u30A1-\u30FA\u30FC-\u30FF\u3105-\u312F\u3131-\u318E' +
  '\u31A0-\u31BF\u31F0-\u31FF\u3400-\u4DBF\u4E00-\u9FFF\uA960-\uA97F\uAC00-\uD7A3' +
  '\uD7B0-\uD7FF\uF900-\uFAFF\u{1B000}-\u{1B16F}\u{20000}-\u{2FFFD}\u{30000}-\u{323AF}';
const IS_CJK = new RegExp(`^[${CJK}]$`, 'u');
const SUBSTRING_MIN_CHARS = 3;
// Foldings that Unicode decomposition does not give (Lucene's ASCIIFoldingFilter does).
const EXTRA_FOLDS = { ß: 'ss', æ: 'ae', œ: 'oe', ø: 'o', đ: 'd', ł: 'l', þ: 'th', ı: 'i' };

/** 'cjk', 'latin' or null (a separator), for a character as NFKC makes it. */
function kindOf(ch) {
  const compatible = [...ch.normalize('NFKC')];
  if (compatible.length > 0 && compatible.every((c) => IS_CJK.test(c))) return 'cjk';
  if (compatible.some((c) => /[\p{Alphabetic}\p{N}]/u.test(c))) return 'latin';
  return null;
}

/** The words of `text`: runs of one kind, with their kind and UTF-16 range. */
function wordsOf(text) {
  const words = [];
  let current = null;
  for (let i = 0; i < text.length;) {
    const ch = String.fromCodePoint(text.codePointAt(i));
    const kind = kindOf(ch);
    if (kind && current && current.kind === kind) current.end = i + ch.length;
    else if (kind) words.push((current = { kind, start: i, end: i + ch.length }));
    else current = null;
    i += ch.length;
  }
  return words;
}

function foldChar(ch) {
  const compatible = ch.normalize('NFKC');
  // CJK keeps its marks (が is not か); other letters lose case and accents.
  if ([...compatible].every((c) => IS_CJK.test(c))) return compatible;
  const lower = compatible.toLowerCase();
  return EXTRA_FOLDS[lower] ?? lower.normalize('NFD').replace(/\p{M}/gu, '');
}

/**
 * A word folded, with for each UTF-16 unit of the folded text the index in `text` it came
 * from. A mark that composes with the character before it (ﾄﾞ is ド) joins that character,
 * as NFKC of the whole text would have it.
 */
function foldWord(text, start, end) {
  const pieces = [];
  for (let i = start; i < end;) {
    const ch = String.fromCodePoint(text.codePointAt(i));
    for (const unit of foldChar(ch)) {
      const last = pieces[pieces.length - 1];
      const composed = last && /\p{M}/u.test(unit) ? (last.s + unit).normalize('NFC') : '';
      if ([...composed].length === 1) last.s = composed;
      else pieces.push({ s: unit, origin: i });
    }
    i += ch.length;
  }
  let folded = '';
  const origin = [];
  for (const piece of pieces) {
    folded += piece.s;
    for (let u = 0; u < piece.s.length; u += 1) origin.push(piece.origin);
  }
  origin.push(end);
  return { folded, origin };
}

function queryWords(query) {
  const words = new Map();
  for (const word of wordsOf(query)) {
    const { folded } = foldWord(query, word.start, word.end);
    if (folded.length > 0) words.set(folded, word.kind);
  }
  return [...words].map(([folded, kind]) => ({ folded, kind }));
}

/** The [start, end) ranges of `text` (UTF-16 indexes) that `query` matches, sorted, merged. */
export function matchRanges(text, query) {
  const words = queryWords(query);
  const ranges = [];
  for (const { kind, start, end } of wordsOf(text)) {
    const { folded, origin } = foldWord(text, start, end);
    for (const word of words) {
      // A query word matches words of its own kind only; a short non-CJK one whole words.
      if (word.kind !== kind) continue;
      if (kind !== 'cjk' && [...word.folded].length < SUBSTRING_MIN_CHARS) {
        if (folded === word.folded) ranges.push([start, end]);
        continue;
      }
      for (let at = folded.indexOf(word.folded); at !== -1; at = folded.indexOf(word.folded, at + 1)) {
        // A folded piece may come from one character ("ß" -> "ss"): widen to whole characters.
        const last = origin[at + word.folded.length - 1];
        const lastEnd = origin.find((o) => o > last) ?? end;
        ranges.push([origin[at], lastEnd]);
      }
    }
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const merged = [];
  for (const range of ranges) {
    const previous = merged[merged.length - 1];
    if (previous && range[0] <= previous[1]) previous[1] = Math.max(previous[1], range[1]);
    else merged.push([...range]);
  }
  return merged;
}

/** `text` as a fragment of text nodes, with the matches of `query` in <mark> elements. */
export function highlighted(document, text, query) {
  const fragment = document.createDocumentFragment();
  let at = 0;
  for (const [start, end] of matchRanges(text, query)) {
    if (start > at) fragment.append(document.createTextNode(text.slice(at, start)));
    const mark = document.createElement('mark');
    mark.textContent = text.slice(start, end);
    fragment.append(mark);
    at = end;
  }
  if (at < text.length) fragment.append(document.createTextNode(text.slice(at)));
  return fragment;
}
