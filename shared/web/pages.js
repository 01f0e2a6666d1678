// What the pages share beside the client module, served as ?asset=pages.js. No build step:
// a module the pages import under their nonce.

/**
 * A URL back to this page's own function: a fixed query ("?id=..."), which the browser
 * resolves against the page's address, so it keeps that origin and path whatever the path
 * holds. The pages never build a URL from their request path (issue 26).
 */
export function here(params = {}) {
  return "?" + new URLSearchParams(params);
}

// The bidirectional embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069).
// In a job's text (a feed's title, a source's name, an error) they would reverse the pages'
// own words beside it; the letters stay, the controls go. (Right-to-left text needs none of
// them: the browser orders it by itself.)
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;

/** A job's text fit to show: no bidi controls, and at most `max` characters (an ellipsis says so). */
export function plain(text, max = Infinity) {
  const clean = String(text ?? "").replace(BIDI_CONTROLS, "");
  if (clean.length <= max) return clean;
  return Array.from(clean).slice(0, max - 1).join("") + "…";
}
