// A deliberately tiny WGSL preprocessor: `#if NAME` / `#if !NAME` / `#else` / `#endif` (nestable,
// on their own lines), `{{NAME}}` substitution and `#include FILE` (shared helpers written once,
// e.g. kernels/f16_packed.wgsl). Anything more belongs in the kernel itself (override constants,
// uniforms). Unknown names throw: a typo must not silently select a branch.
// An included file is preprocessed with the same defines and appended once at the end of the
// module (WGSL declarations are order-independent), so the including file's line numbers stay
// those of its source for compiler messages; its `enable` directives go to the start of the first
// line (kernels/f16_enable.wgsl). Includes do not nest.

export type DefineValue = boolean | number | string;
export type Defines = Readonly<Record<string, DefineValue>>;

export function preprocessWgsl(source: string, defines: Defines, fileName: string, includes: Readonly<Record<string, string>> = {}): string {
  const lines = source.split("\n");
  const out: string[] = [];
  const included: string[] = [];
  // Each stack entry: is this branch active, and was the #if condition true.
  const stack: { active: boolean; cond: boolean; line: number }[] = [];
  const isActive = () => stack.every((s) => s.active);
  lines.forEach((line, i) => {
    const directive = /^\s*#(if|else|endif)\b\s*(!?)\s*([A-Za-z_][A-Za-z0-9_]*)?\s*$/.exec(line);
    if (directive) {
      const [, kind, negate, name] = directive;
      if (kind === "if") {
        if (!name) throw new Error(`${fileName}.wgsl:${i + 1}: #if needs a name`);
        if (!(name in defines)) throw new Error(`${fileName}.wgsl:${i + 1}: #if ${name}: '${name}' is not defined for this variant`);
        const v = Boolean(defines[name]);
        const cond = negate ? !v : v;
        stack.push({ active: cond, cond, line: i + 1 });
      } else if (kind === "else") {
        const top = stack[stack.length - 1];
        if (!top) throw new Error(`${fileName}.wgsl:${i + 1}: #else without #if`);
        top.active = !top.cond;
      } else {
        if (!stack.pop()) throw new Error(`${fileName}.wgsl:${i + 1}: #endif without #if`);
      }
      out.push(""); // keep line numbers stable for compiler messages
      return;
    }
    const include = /^\s*#include\s+([A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(line);
    if (include) {
      const name = include[1]!;
      if (isActive() && !included.includes(name)) {
        const text = includes[name];
        if (text === undefined) throw new Error(`${fileName}.wgsl:${i + 1}: #include ${name}: no kernels/${name}.wgsl`);
        if (/^\s*#include\b/m.test(text)) throw new Error(`kernels/${name}.wgsl: includes do not nest (included from ${fileName}.wgsl:${i + 1})`);
        included.push(name);
      }
      out.push("");
      return;
    }
    if (/^\s*#/.test(line)) throw new Error(`${fileName}.wgsl:${i + 1}: unknown directive '${line.trim()}'`);
    if (!isActive()) {
      out.push("");
      return;
    }
    out.push(
      line.replace(/\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}/g, (_m, name: string) => {
        const v = defines[name];
        if (v === undefined) throw new Error(`${fileName}.wgsl:${i + 1}: {{${name}}} is not defined for this variant`);
        return String(v);
      }),
    );
  });
  if (stack.length) throw new Error(`${fileName}.wgsl:${stack[stack.length - 1]!.line}: #if without #endif`);
  // Enable directives must precede every declaration: an included file's are moved to the start
  // of the module's first line (which keeps the including file's line numbers).
  const enables: string[] = [];
  for (const name of included) {
    const body = preprocessWgsl(includes[name]!, defines, name)
      .split("\n")
      .map((l) => {
        if (!/^\s*enable\s+[A-Za-z0-9_,\s]+;\s*$/.test(l)) return l;
        if (!enables.includes(l.trim())) enables.push(l.trim());
        return "";
      });
    out.push(`// ---- #include ${name} (kernels/${name}.wgsl)`, body.join("\n"));
  }
  if (enables.length) out[0] = `${enables.join(" ")} ${out[0]}`;
  return out.join("\n");
}
