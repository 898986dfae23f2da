"use strict";
// Shared by the pages: elements built with the DOM (strings become text, never markup), the
// token (asked for once, kept in sessionStorage, sent as a header, never in a URL) and calls
// to the server's JSON functions.
const modelfly = (() => {
  const TOKEN_KEY = "modelfly-token";

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === false || value === null || value === undefined) continue;
      node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...children.map((child) => (child instanceof Node ? child : String(child))));
    return node;
  }

  let asking = null; // one question at a time, however many calls wait for its answer

  function askToken(message) {
    if (asking) return asking;
    const input = el("input", {id: "token", type: "password", autocomplete: "off",
                               required: true});
    const form = el("form", {id: "token-form", class: "token"},
      el("p", {id: "token-message"}, message),
      el("label", {for: "token"}, "Token"), input,
      el("button", {type: "submit"}, "Use this token"));
    document.querySelector("main").prepend(form);
    input.focus();
    asking = new Promise((resolve) => {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const token = input.value.trim();
        if (!token) return;
        sessionStorage.setItem(TOKEN_KEY, token);
        form.remove();
        asking = null;
        resolve(token);
      });
    });
    return asking;
  }

  function storedToken() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function token() {
    if (storedToken() || document.body.dataset.auth !== "token") return storedToken();
    return askToken("This server needs a token.");
  }

  // POSTs `body` as JSON to `path`; resolves to {status, body}, the body an object (an error
  // the server sent, or one saying what went wrong on the way).
  async function call(path, body) {
    return request(path, {method: "POST", body: JSON.stringify(body),
                          type: "application/json"});
  }

  // Any call: `method`, a `body` of content `type`, the answer read as JSON or, when `accept`
  // is given and answered, as text ({status, text}).
  async function request(path, {method = "GET", body, type, accept} = {}) {
    for (;;) {
      const headers = {Accept: accept || "application/json"};
      if (type) headers["Content-Type"] = type;
      const current = await token();
      if (current) headers.Authorization = `Bearer ${current}`;
      let response;
      try {
        response = await fetch(path, {method, headers, body});
      } catch (failure) {
        return {status: 0, body: {error: "the server could not be reached"}};
      }
      if (response.status === 401 || response.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        await askToken(response.status === 403 ? "That token is not this server's; try again."
          : "This server needs a token.");
        continue;
      }
      if (accept && response.ok) return {status: response.status, text: await response.text()};
      try {
        return {status: response.status, body: await response.json()};
      } catch (failure) {
        return {status: response.status,
                body: {error: `the server answered ${response.status} without JSON`}};
      }
    }
  }

  return {el, call, request, token, storedToken};
})();
