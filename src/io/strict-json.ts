// A strict JSON parser (RFC 8259) for headers read from untrusted files (safetensors): duplicate
// keys in any object are an error (JSON.parse keeps the last duplicate silently), integer literals
// become bigint (offsets past 2^53 are not rounded), depth and value count are bounded.

/** JSON values with objects as Maps (no prototype keys) and integer literals as bigint. */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly duplicate: { key: string; path: string[] } | null = null,
    readonly tooManyValues = false,
  ) {
    super(message);
  }
}


const MAX_DEPTH = 64;

/**
 * Parses JSON strictly (RFC 8259): duplicate keys in any object are an error; integer literals
 * (no fraction or exponent) become bigint so that offsets past 2^53 are not silently rounded.
 */
export function parseStrictJson(text: string, maxValues = Infinity): JsonValue {
  let i = 0;
  let values = 0;
  const n = text.length;
  const path: string[] = [];
  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const fail = (what: string): never => {
    throw new JsonSyntaxError(i < n ? `${what} at character ${i}` : `${what} at end of input`);
  };
  const str = (): string => {
    i++; // opening quote
    let out = "";
    let start = i;
    for (;;) {
      if (i >= n) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        i += 2;
        switch (e) {
          case '"': out += '"'; break;
          case "\\": out += "\\"; break;
          case "/": out += "/"; break;
          case "b": out += "\b"; break;
          case "f": out += "\f"; break;
          case "n": out += "\n"; break;
          case "r": out += "\r"; break;
          case "t": out += "\t"; break;
          case "u": {
            const hex = text.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
            out += String.fromCharCode(parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            i -= 2;
            fail("bad escape");
        }
        start = i;
      } else i++;
    }
  };
  const num = (): number | bigint => {
    const start = i;
    if (text[i] === "-") i++;
    if (text[i] === "0") i++;
    else if (text[i]! >= "1" && text[i]! <= "9") while (i < n && text[i]! >= "0" && text[i]! <= "9") i++;
    else fail("bad number");
    let isInt = true;
    if (text[i] === ".") {
      isInt = false;
      i++;
      if (!(text[i]! >= "0" && text[i]! <= "9")) fail("bad number");
      while (i < n && text[i]! >= "0" && text[i]! <= "9") i++;
    }
    if (text[i] === "e" || text[i] === "E") {
      isInt = false;
      i++;
      if (text[i] === "+" || text[i] === "-") i++;
      if (!(text[i]! >= "0" && text[i]! <= "9")) fail("bad number");
      while (i < n && text[i]! >= "0" && text[i]! <= "9") i++;
    }
    const lit = text.slice(start, i);
    if (!isInt) return Number(lit);
    // Integers of more than 30 digits are out of every range we check; keep BigInt's cost bounded.
    return lit.replace("-", "").length > 30 ? (lit.startsWith("-") ? -(10n ** 30n) : 10n ** 30n) : BigInt(lit);
  };
  const value = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    if (++values > maxValues) throw new JsonSyntaxError(`more than ${maxValues} values`, null, true);
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj: JsonObject = new Map();
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a string key");
        const key = str();
        if (obj.has(key)) throw new JsonSyntaxError(`duplicate key '${key}'`, { key, path: [...path] });
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        path.push(key);
        obj.set(key, value(depth + 1));
        path.pop();
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (c === "t" && text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (c === "f" && text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (c === "n" && text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return num();
    return fail("unexpected character");
  };
  const v = value(0);
  ws();
  if (i < n) fail("unexpected data after the JSON value");
  return v;
}
