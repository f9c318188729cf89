// Highlights the parts of a message that a search query matched, with the server's rules
// (crates/domain/src/search.rs): words are runs of letters and digits, compared lowercased
// and without accents; a query word of 3+ characters matches inside a word, a shorter one
// only a whole word. The result is built from text nodes and <mark> elements, never HTML.

const WORD = /[\p{Alphabetic}\p{Nd}\p{Nl}\p{No}]+/gu;
const SUBSTRING_MIN_CHARS = 3;
// Foldings that Unicode decomposition does not give (Lucene's ASCIIFoldingFilter does).
const EXTRA_FOLDS = { ß: 'ss', æ: 'ae', œ: 'oe', ø: 'o', đ: 'd', ł: 'l', þ: 'th', ı: 'i' };

function foldChar(ch) {
  const lower = ch.toLowerCase();
  return EXTRA_FOLDS[lower] ?? lower.normalize('NFD').replace(/\p{M}/gu, '');
}

/** A word folded, with for each folded character the index in `text` it came from. */
function foldWord(text, start, end) {
  let folded = '';
  const origin = [];
  for (let i = start; i < end;) {
    const ch = String.fromCodePoint(text.codePointAt(i));
    const piece = foldChar(ch);
    for (const unit of piece) {
      folded += unit;
      origin.push(i);
    }
    i += ch.length;
  }
  origin.push(end);
  return { folded, origin };
}

function queryWords(query) {
  const words = new Set();
  for (const match of query.matchAll(WORD)) words.add(foldWord(match[0], 0, match[0].length).folded);
  return [...words].filter((w) => w.length > 0);
}

/** The [start, end) ranges of `text` (UTF-16 indexes) that `query` matches, sorted, merged. */
export function matchRanges(text, query) {
  const words = queryWords(query);
  const ranges = [];
  for (const match of text.matchAll(WORD)) {
    const start = match.index;
    const end = start + match[0].length;
    const { folded, origin } = foldWord(text, start, end);
    for (const word of words) {
      if (word.length < SUBSTRING_MIN_CHARS) {
        if (folded === word) ranges.push([start, end]);
        continue;
      }
      for (let at = folded.indexOf(word); at !== -1; at = folded.indexOf(word, at + 1)) {
        // A folded piece may come from one character ("ß" -> "ss"): widen to whole characters.
        const last = origin[at + word.length - 1];
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
