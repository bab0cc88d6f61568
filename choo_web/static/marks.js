// Marking search matches in text, safely: text is split into text nodes and
// <mark> elements made with the DOM, never parsed as HTML.

import { h } from "./dom.js";

/** `text` as nodes, with the [start, length] ranges (code points, from the API) marked. */
export function markedRanges(text, ranges) {
  const chars = Array.from(text); // the API counts code points, not UTF-16 units
  const nodes = [];
  let at = 0;
  for (const [start, length] of ranges) {
    if (start < at) continue;
    if (start > at) nodes.push(chars.slice(at, start).join(""));
    nodes.push(h("mark", { text: chars.slice(start, start + length).join("") }));
    at = start + length;
  }
  if (at < chars.length) nodes.push(chars.slice(at).join(""));
  return nodes;
}

/** Where the words of `terms` ({text, prefix}, as the API parsed the query) start in `text`. */
function findTerms(text, terms) {
  const lower = text.toLowerCase();
  const found = [];
  for (const { text: term } of terms) {
    if (!term) continue;
    for (let i = lower.indexOf(term); i >= 0; i = lower.indexOf(term, i + term.length)) {
      found.push([i, term.length]);
    }
  }
  found.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  return found;
}

/**
 * Mark every occurrence of the terms in the text under `root` (in place).
 * Each text node that holds one is replaced by text nodes and <mark>s.
 */
export function markTerms(root, terms) {
  if (!terms || !terms.length) return 0;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) nodes.push(node);
  let marked = 0;
  for (const node of nodes) {
    const text = node.nodeValue;
    const found = findTerms(text, terms);
    if (!found.length) continue;
    const parts = [];
    let at = 0;
    for (const [start, length] of found) {
      if (start < at) continue;
      if (start > at) parts.push(document.createTextNode(text.slice(at, start)));
      parts.push(h("mark", { text: text.slice(start, start + length) }));
      at = start + length;
      marked += 1;
    }
    if (at < text.length) parts.push(document.createTextNode(text.slice(at)));
    node.replaceWith(...parts);
  }
  return marked;
}
