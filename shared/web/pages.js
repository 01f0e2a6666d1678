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

// The API token, typed once per tab (issue 23): the dashboard (enqueue's origin) hands it to
// the status page (status's origin) in the address's fragment, which no server sees and no
// Referer carries; the page takes it out of the address bar at once and keeps it in
// sessionStorage, which is this origin's, this tab's, and gone when the tab closes. The
// archive (the status page's origin) finds it there. "Forget my token" removes it.
const TOKEN_KEY = "jobqueue.token";

/** The token this tab holds for this origin (taking one handed over in the fragment), or null. */
export function rememberedToken() {
  const handed = new URLSearchParams(location.hash.slice(1)).get("token");
  if (handed) {
    sessionStorage.setItem(TOKEN_KEY, handed);
    history.replaceState(history.state, "", location.href.split("#")[0]);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function rememberToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** `url` with the token in its fragment, for a page of another origin that should not ask again. */
export function handingToken(url, token) {
  return token ? `${url.split("#")[0]}#${new URLSearchParams({ token })}` : url;
}
