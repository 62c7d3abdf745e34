// A deliberately tiny WGSL preprocessor: `#if NAME` / `#if !NAME` / `#else` / `#endif` (nestable,
// on their own lines) and `{{NAME}}` substitution. Anything more belongs in the kernel itself
// (override constants, uniforms). Unknown names throw: a typo must not silently select a branch.

export type DefineValue = boolean | number | string;
export type Defines = Readonly<Record<string, DefineValue>>;

export function preprocessWgsl(source: string, defines: Defines, fileName: string): string {
  const lines = source.split("\n");
  const out: string[] = [];
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
  return out.join("\n");
}
