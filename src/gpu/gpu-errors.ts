// GPU errors as the context reports them: errors Dawn raises asynchronously (uncaptured
// validation and out-of-memory errors, validation errors of a submitted batch, named by the
// kernels it ran) are queued and thrown once at the next check (sync, readback); a lost device
// makes every later call throw DeviceLostError.

import { DeviceLostError, GpuOutOfMemoryError, GpuValidationError } from "../errors.js";

export class GpuErrorWatch {
  private readonly pending: Error[] = [];
  /** Why the device was lost ("reason: message"), or null. */
  lost: string | null = null;

  /** `expectedLoss()`: true once the owner destroyed the device itself (not reported as lost). */
  constructor(
    private readonly device: GPUDevice,
    expectedLoss: () => boolean,
  ) {
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      const e = ev.error;
      this.pending.push(e instanceof GPUOutOfMemoryError ? new GpuOutOfMemoryError(`GPU out of memory: ${e.message}`) : new GpuValidationError(`GPU error: ${e.message}`));
    };
    void device.lost.then((info) => {
      if (!expectedLoss()) this.lost = `${info.reason}: ${info.message}`;
    });
  }

  /**
   * Finishes `encoder` and submits it; a validation error found while finishing or submitting is
   * queued naming `kernels` (what the batch ran).
   */
  submit(encoder: GPUCommandEncoder, kernels: readonly string[]): void {
    this.device.pushErrorScope("validation");
    const cmd = encoder.finish({ label: "onegen-batch" });
    this.device.queue.submit([cmd]);
    void this.device.popErrorScope().then((err) => {
      if (err) this.pending.push(new GpuValidationError(`GPU validation error in a batch running kernels [${kernels.join(", ")}]: ${err.message}`));
    });
  }

  /** Throws (once) the first GPU error reported since the last check, or DeviceLostError. */
  throwPending(): void {
    if (this.lost) throw new DeviceLostError(`GPU device lost: ${this.lost}`);
    const e = this.pending.shift();
    if (e) {
      this.pending.length = 0;
      throw e;
    }
  }
}
