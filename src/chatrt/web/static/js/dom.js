// Building elements. Every piece of user or model text goes in as a text node
// (textContent / append of a string): nothing here ever parses HTML.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("aria-") || key === "role" || key === "href") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`missing #${id}`);
  return node;
}

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// Show a text in an alert/status element, or clear and hide it.
export function say(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

// Sortable form of an RFC 3339 UTC timestamp: fractions padded, so strings compare as times.
export function timeKey(stamp) {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$/.exec(stamp || "");
  if (!match) return stamp || "";
  return `${match[1]}.${(match[2] || "").padEnd(9, "0")}${match[3]}`;
}
