// Shared helpers of the console pages: JSON calls to the gateway and its error shape.
"use strict";

// The token typed on the reranker page goes with every call: the admin token is accepted by reading
// routes too, which need one when endpoints.read_token is set.
function tokenHeaders() {
  const token = localStorage.getItem("feedrank.adminToken") || "";
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json", ...tokenHeaders() };
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const err = (data && data.error) || {};
    const where = err.field ? ` (${err.field})` : "";
    throw new Error(`${response.status} ${err.code || ""}: ${err.message || text}${where}`);
  }
  return data;
}

function newId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function fmt(x, digits = 3) {
  return typeof x === "number" ? x.toFixed(digits) : String(x ?? "");
}
