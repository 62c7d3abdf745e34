// Typed errors. Each names what it is about (tensor, file, kernel, field) and, where the fix is
// known, carries a hint. The message is one line ("…; hint: …"), as the CLI prints it. Tests match
// on the class and on the message.

export class OnegenError extends Error {
  readonly hint: string | undefined;
  constructor(message: string, hint?: string) {
    super(hint ? `${message}; hint: ${hint}` : message);
    this.name = new.target.name;
    this.hint = hint;
  }
}

/** A shape or dtype does not fit an op: says which tensor, expected and actual. */
export class ShapeError extends OnegenError {}

/** A file (checkpoint, config, index, tokenizer) is malformed or missing. */
export class LoadError extends OnegenError {}

/** A computation produced NaN or infinity (generation logits, a training loss): says where (position, step). */
export class NonFiniteError extends OnegenError {}

/** The request is valid in general but not supported here (feature, dtype, architecture, size). */
export class UnsupportedError extends OnegenError {}

/** No WebGPU adapter or device could be obtained. */
export class GpuUnavailableError extends OnegenError {}

/** A WebGPU validation error, re-raised with the kernel or stage that caused it. */
export class GpuValidationError extends OnegenError {}

/** A GPU allocation failed. */
export class GpuOutOfMemoryError extends OnegenError {}

/** The device was lost; every later GPU call fails with this. */
export class DeviceLostError extends OnegenError {}

/** A user-facing argument is wrong (CLI flags, API options). */
export class UsageError extends OnegenError {}
