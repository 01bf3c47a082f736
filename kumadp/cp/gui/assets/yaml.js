// JSON values as block-style YAML, the way `kumadp ctl get -o yaml` and Kuma print
// resources. Strings that YAML would read as something else are double-quoted (JSON string
// syntax is valid YAML).

const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_./ :@+=~-]*$/;
const RESERVED = /^(true|false|yes|no|on|off|null|~|y|n)$/i;
const NUMBERLIKE = /^[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?$|^0x|^0o|^[-+]?\.(inf|nan)$/i;

function scalarString(s) {
  if (
    s === '' ||
    !PLAIN.test(s) ||
    RESERVED.test(s) ||
    NUMBERLIKE.test(s) ||
    s.endsWith(' ') ||
    s.endsWith(':') ||
    s.includes(': ') ||
    s.includes(' #') ||
    /^\d.*[-:]/.test(s) // dates, times, sexagesimals: YAML 1.1 would read them as such
  ) {
    return JSON.stringify(s);
  }
  return s;
}

function scalar(value) {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return scalarString(value);
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    const text = String(value);
    // YAML 1.1 reads an exponent as a float only with a dot: 1e+21 -> 1.0e+21
    return /e/i.test(text) && !text.includes('.') ? text.replace(/e/i, '.0e') : text;
  }
  return JSON.stringify(value);
}

function isEmpty(value) {
  return (Array.isArray(value) && !value.length) || (value && typeof value === 'object' && !Object.keys(value).length);
}

function block(value, indent, out) {
  const pad = ' '.repeat(indent);
  if (Array.isArray(value)) {
    for (const item of value) {
      if (item && typeof item === 'object' && !isEmpty(item)) {
        const lines = [];
        block(item, indent + 2, lines);
        lines[0] = `${pad}- ${lines[0].slice(indent + 2)}`;
        out.push(...lines);
      } else {
        out.push(`${pad}- ${isEmpty(item) ? (Array.isArray(item) ? '[]' : '{}') : scalar(item)}`);
      }
    }
    return;
  }
  for (const [key, item] of Object.entries(value)) {
    const name = scalarString(key);
    if (item && typeof item === 'object' && !isEmpty(item)) {
      out.push(`${pad}${name}:`);
      block(item, Array.isArray(item) ? indent : indent + 2, out);
    } else {
      out.push(`${pad}${name}: ${isEmpty(item) ? (Array.isArray(item) ? '[]' : '{}') : scalar(item)}`);
    }
  }
}

export function toYaml(value) {
  if (value === null || typeof value !== 'object') return `${scalar(value)}\n`;
  if (isEmpty(value)) return Array.isArray(value) ? '[]\n' : '{}\n';
  const out = [];
  block(value, 0, out);
  return `${out.join('\n')}\n`;
}
