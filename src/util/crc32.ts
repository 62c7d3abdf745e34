// CRC-32 (IEEE 802.3, as zlib's crc32): CRC_INIT, then crc32Update over the bytes in order,
// then crc32Hex for the 8-digit lowercase hex of the final value.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
export const CRC_INIT = 0xffffffff;

export function crc32Update(crc: number, bytes: Uint8Array): number {
  let c = crc;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}
export function crc32Hex(crc: number): string {
  return ((crc ^ 0xffffffff) >>> 0).toString(16).padStart(8, "0");
}
