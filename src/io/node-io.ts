// Node's filesystem for the output module (src/io/output.ts and its parts): node:fs/promises and
// node:path imported lazily through variables so browser bundles stay clean, the few calls used,
// and fsync of a directory.


export interface NodeStats {
  isDirectory(): boolean;
  isFile(): boolean;
  isSymbolicLink(): boolean;
  size: number;
  dev: number;
  ino: number;
  mode: number;
}
interface NodeFileHandle {
  write(b: Uint8Array | string): Promise<unknown>;
  read(b: Uint8Array, off: number, len: number, pos: number): Promise<{ bytesRead: number }>;
  sync(): Promise<void>;
  close(): Promise<void>;
  stat(): Promise<NodeStats>;
}
export interface NodeFs {
  open(p: string, flags: string, mode?: number): Promise<NodeFileHandle>;
  mkdir(p: string, o?: { recursive?: boolean }): Promise<string | undefined>;
  rename(a: string, b: string): Promise<void>;
  rm(p: string, o: { recursive: boolean; force: boolean }): Promise<void>;
  rmdir(p: string): Promise<void>;
  readdir(p: string): Promise<string[]>;
  stat(p: string): Promise<NodeStats>;
  lstat(p: string): Promise<NodeStats>;
  realpath(p: string): Promise<string>;
  access(p: string, mode: number): Promise<void>;
  readFile(p: string): Promise<Uint8Array>;
  link(a: string, b: string): Promise<void>;
  copyFile(a: string, b: string): Promise<void>;
  readlink(p: string): Promise<string>;
  symlink(target: string, p: string): Promise<void>;
  chmod(p: string, mode: number): Promise<void>;
  constants: { W_OK: number; X_OK: number };
}
export interface NodePath {
  resolve(...p: string[]): string;
  dirname(p: string): string;
  basename(p: string): string;
  join(...p: string[]): string;
  isAbsolute(p: string): boolean;
  sep: string;
}

let modules: Promise<{ fs: NodeFs; path: NodePath }> | null = null;
/** node:fs/promises and node:path, imported on first use (variables, so browser bundlers leave them alone). */
export function nodeIo(): Promise<{ fs: NodeFs; path: NodePath }> {
  if (!modules) {
    const fsName = "node:fs/promises";
    const pathName = "node:path";
    modules = Promise.all([import(fsName), import(pathName)]).then(([fs, path]) => ({ fs: fs as NodeFs, path: path as NodePath }));
  }
  return modules;
}

/** True under Node or Deno (a filesystem to recover); false in browsers. */
export function hasNodeFs(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === "string";
}

export const errCode = (e: unknown): string | undefined => (e as { code?: string } | null)?.code;

export async function syncDir(fs: NodeFs, dir: string): Promise<void> {
  // fsync of a directory makes its entries (new files, renames) durable (Linux, macOS).
  let fh: NodeFileHandle;
  try {
    fh = await fs.open(dir, "r");
  } catch {
    return; // Windows cannot open directories; its renames are durable on return
  }
  try {
    await fh.sync();
  } catch {
    // some filesystems refuse fsync on directories; nothing more can be done
  } finally {
    await fh.close();
  }
}
