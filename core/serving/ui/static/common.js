// Helpers shared by the pages: DOM building (text only, never HTML from data), the JSON API, base64.
"use strict";

const UI = {
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  },

  modelUrl(name, version) {
    return `/v1/models/${encodeURIComponent(name)}` + (version ? `/versions/${encodeURIComponent(version)}` : "");
  },

  pageUrl(name) {
    return `/models/${encodeURIComponent(name)}`;
  },

  // {ok, status, body}; body is the parsed JSON, or {error: text} when the answer is not JSON.
  async request(url, options) {
    let response;
    try {
      response = await fetch(url, Object.assign({cache: "no-store"}, options || {}));
    } catch (err) {
      return {ok: false, status: 0, body: {error: `The server did not answer (${err.message}). Is catalogue serve still running?`}};
    }
    const text = await response.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch (err) {
      body = {error: text || `${response.status} ${response.statusText}`};
    }
    return {ok: response.ok, status: response.status, body};
  },

  // The message exactly as the API (or the browser) worded it, after a short title.
  showError(message, title) {
    const box = document.getElementById("error");
    box.replaceChildren();
    if (message) {
      if (title) box.append(UI.el("strong", {class: "title", text: title}), " ");
      box.append(UI.el("span", {class: "message", text: message}));
    }
    box.hidden = !message;
  },

  bytesToBase64(bytes) {
    let binary = "";
    const chunk = 0x8000;
    for (let i = 0; i < bytes.length; i += chunk) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
    }
    return btoa(binary);
  },

  base64ToBytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  },

  // The media type of encoded bytes, from their first bytes (what the models take and return).
  sniff(bytes) {
    const at = (offset, text) => [...text].every((c, i) => bytes[offset + i] === c.charCodeAt(0));
    if (bytes.length >= 8 && bytes[0] === 0x89 && at(1, "PNG")) return "image/png";
    if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "image/jpeg";
    if (at(0, "GIF8")) return "image/gif";
    if (bytes.length >= 12 && at(0, "RIFF") && at(8, "WEBP")) return "image/webp";
    if (bytes.length >= 12 && at(0, "RIFF") && at(8, "WAVE")) return "audio/wav";
    if (bytes.length >= 26 && at(0, "BM")) return "image/bmp";
    return "";
  },

  stateClass(state) {
    return {AVAILABLE: "ok", LOADING: "busy", START: "busy", UNLOADING: "busy", END: "bad"}[state] || "";
  },
};
