// Hashes the portal needs beyond WebCrypto: SHA-256 fed in pieces (WebCrypto's digest takes one
// whole buffer, so a shared document could not be checked while it streams) and BLAKE3 (the
// vault names a blob by the BLAKE3 of its bytes; WebCrypto has no BLAKE3). Both follow their
// specifications (FIPS 180-4; the BLAKE3 paper, section 2), written for clarity over speed;
// the portal test checks them against the node's Rust implementations.
'use strict';

/** SHA-256, fed with `update(bytes)` any number of times, then `digest()` (32 bytes). */
class Sha256 {
  constructor() {
    this.h = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.block = new Uint8Array(64);
    this.fill = 0;
    this.length = 0; // bytes hashed so far
    this.w = new Int32Array(64);
  }

  update(bytes) {
    let at = 0;
    this.length += bytes.length;
    if (this.fill) {
      const n = Math.min(64 - this.fill, bytes.length);
      this.block.set(bytes.subarray(0, n), this.fill);
      this.fill += n;
      at = n;
      if (this.fill < 64) return this;
      this.compress(this.block, 0);
      this.fill = 0;
    }
    for (; at + 64 <= bytes.length; at += 64) this.compress(bytes, at);
    this.block.set(bytes.subarray(at), 0);
    this.fill = bytes.length - at;
    return this;
  }

  digest() {
    const bits = this.length * 8;
    const pad = new Uint8Array(((this.fill + 8) >> 6 << 6) + 64 - this.fill);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    view.setUint32(pad.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(pad.length - 4, bits >>> 0);
    this.length -= pad.length; // padding is not message
    this.update(pad);
    const out = new Uint8Array(32);
    const o = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) o.setInt32(4 * i, this.h[i]);
    return out;
  }

  compress(b, at) {
    const w = this.w;
    const K = Sha256.K;
    for (let i = 0; i < 16; i++) {
      const j = at + 4 * i;
      w[i] = (b[j] << 24) | (b[j + 1] << 16) | (b[j + 2] << 8) | b[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15];
      const y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (((w[i - 16] + s0) | 0) + ((w[i - 7] + s1) | 0)) | 0;
    }
    const h = this.h;
    let a = h[0]; let bb = h[1]; let c = h[2]; let d = h[3];
    let e = h[4]; let f = h[5]; let g = h[6]; let hh = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (((((hh + S1) | 0) + ((e & f) ^ (~e & g))) | 0) + ((K[i] + w[i]) | 0)) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0;
      d = c; c = bb; bb = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + bb) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + hh) | 0;
  }
}
// Int32Array, not Uint32Array: the arithmetic then stays in 32-bit integers (several times faster).
Sha256.K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

/** BLAKE3 (unkeyed, 32-byte output) of `bytes`. */
const blake3 = (() => {
  const IV = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
  const CHUNK_START = 1; const CHUNK_END = 2; const PARENT = 4; const ROOT = 8;
  const CHUNK_LEN = 1024;
  const s = new Uint32Array(16);
  const m = new Uint32Array(16);
  const t = new Uint32Array(16);

  function g(a, b, c, d, x, y) {
    s[a] = s[a] + s[b] + x; s[d] ^= s[a]; s[d] = (s[d] >>> 16) | (s[d] << 16);
    s[c] = s[c] + s[d]; s[b] ^= s[c]; s[b] = (s[b] >>> 12) | (s[b] << 20);
    s[a] = s[a] + s[b] + y; s[d] ^= s[a]; s[d] = (s[d] >>> 8) | (s[d] << 24);
    s[c] = s[c] + s[d]; s[b] ^= s[c]; s[b] = (s[b] >>> 7) | (s[b] << 25);
  }

  /** The compression function: the 16 output words for chaining value `cv` and block `words`. */
  function compress(cv, words, counter, blockLen, flags) {
    s.set(cv, 0); s.set(IV.subarray(0, 4), 8);
    s[12] = counter >>> 0; s[13] = Math.floor(counter / 0x100000000); s[14] = blockLen; s[15] = flags;
    m.set(words);
    for (let r = 0; r < 7; r++) {
      g(0, 4, 8, 12, m[0], m[1]); g(1, 5, 9, 13, m[2], m[3]);
      g(2, 6, 10, 14, m[4], m[5]); g(3, 7, 11, 15, m[6], m[7]);
      g(0, 5, 10, 15, m[8], m[9]); g(1, 6, 11, 12, m[10], m[11]);
      g(2, 7, 8, 13, m[12], m[13]); g(3, 4, 9, 14, m[14], m[15]);
      if (r < 6) { for (let i = 0; i < 16; i++) t[i] = m[PERMUTATION[i]]; m.set(t); }
    }
    const out = new Uint32Array(16);
    for (let i = 0; i < 8; i++) { out[i] = s[i] ^ s[i + 8]; out[i + 8] = s[i + 8] ^ cv[i]; }
    return out;
  }

  function blockWords(bytes, at, len) {
    const w = new Uint32Array(16);
    for (let i = 0; i < len; i++) w[i >> 2] |= bytes[at + i] << (8 * (i & 3));
    return w;
  }

  /** A chunk's last compression, not yet done: its flags gain ROOT if it is the whole input. */
  function chunkOutput(bytes, at, len, counter) {
    let cv = IV;
    let off = 0;
    let flags = CHUNK_START;
    while (len - off > 64) {
      cv = compress(cv, blockWords(bytes, at + off, 64), counter, 64, flags).subarray(0, 8);
      flags = 0;
      off += 64;
    }
    return { cv, words: blockWords(bytes, at + off, len - off), counter, len: len - off, flags: flags | CHUNK_END };
  }
  const parentOutput = (left, right) => {
    const words = new Uint32Array(16);
    words.set(left, 0); words.set(right, 8);
    return { cv: IV, words, counter: 0, len: 64, flags: PARENT };
  };
  const chainingValue = (o) => compress(o.cv, o.words, o.counter, o.len, o.flags).subarray(0, 8);

  return function blake3(bytes) {
    // Every chunk but the last goes on the stack of subtree chaining values, merged as soon as
    // two subtrees of equal size sit on top of it (section 5.1.2 of the paper).
    const stack = [];
    const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_LEN));
    for (let i = 0; i + 1 < chunks; i++) {
      let cv = chainingValue(chunkOutput(bytes, i * CHUNK_LEN, CHUNK_LEN, i));
      for (let total = i + 1; (total & 1) === 0; total >>= 1) cv = chainingValue(parentOutput(stack.pop(), cv));
      stack.push(cv);
    }
    const last = (chunks - 1) * CHUNK_LEN;
    let out = chunkOutput(bytes, last, bytes.length - last, chunks - 1);
    while (stack.length) out = parentOutput(stack.pop(), chainingValue(out));
    const words = compress(out.cv, out.words, 0, out.len, out.flags | ROOT);
    const hash = new Uint8Array(32);
    for (let i = 0; i < 32; i++) hash[i] = (words[i >> 2] >>> (8 * (i & 3))) & 0xff;
    return hash;
  };
})();
