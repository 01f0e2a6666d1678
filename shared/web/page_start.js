// The start of each page's module (pages.fill puts it in). The client and the
// pages' helpers are fixed queries on this page's own address ("?asset=..."), resolved by
// the browser, so they keep this origin whatever the path holds (issue 26); a module
// specifier cannot be a bare query, hence the URL objects. They load before the page's
// handlers exist: a form sent meanwhile is held and sent again once they do (the browser's
// own submission would be refused: form-action 'none').
const held = new Set();
const hold = (event) => { event.preventDefault(); held.add(event.target); };
document.addEventListener("submit", hold);
const loading = Promise.all([
  import(new URL("?asset=client.js", location.href)),
  import(new URL("?asset=pages.js", location.href)),
]);
loading.then(() => setTimeout(() => {  // after the rest of the page's module has run
  document.removeEventListener("submit", hold);
  held.forEach((form) => form.requestSubmit());
}));
const [{ createClient }, { here, plain, rememberedToken, rememberToken, forgetToken, handingToken }] = await loading;
