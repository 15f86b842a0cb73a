/**
 * Canonical binary encoding helpers: unsigned LEB128 varints, length-prefixed bytes and
 * strings, and base64url text. Every encoded form in the core is built from these, so one
 * reader checks every bound.
 */
import { assert } from "./assert.ts";

/** Largest integer a varint here may carry: the safe-integer range, so no precision is lost. */
const VARINT_BYTES_MAX = 8;

const textEncoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF as data: stripping it would change the decoded string.
const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Thrown by {@link ByteReader} on malformed input: a data error, not a bug. */
export class DecodeError extends Error {
  override readonly name = "DecodeError";
}

/** Appends canonical values to a growing buffer. */
export class ByteWriter {
  private buffer = new Uint8Array(64);
  private length = 0;

  private reserve(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buffer.subarray(0, this.length));
    this.buffer = next;
  }

  /** One byte, 0..255. */
  byte(value: number): this {
    assert(Number.isInteger(value) && value >= 0 && value <= 0xff, "byte out of range");
    this.reserve(1);
    this.buffer[this.length++] = value;
    return this;
  }

  /** A non-negative safe integer as an unsigned LEB128 varint. */
  varint(value: number): this {
    assert(Number.isSafeInteger(value) && value >= 0, "varint must be a non-negative safe integer");
    this.reserve(VARINT_BYTES_MAX);
    let rest = value;
    while (rest >= 0x80) {
      this.buffer[this.length++] = (rest % 0x80) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    this.buffer[this.length++] = rest;
    return this;
  }

  /** Raw bytes, preceded by their length. */
  bytes(value: Uint8Array): this {
    this.varint(value.length);
    this.reserve(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
    return this;
  }

  /** A UTF-8 string, preceded by its byte length. */
  string(value: string): this {
    return this.bytes(textEncoder.encode(value));
  }

  /** The bytes written so far (a copy). */
  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

/** Reads what {@link ByteWriter} wrote, throwing {@link DecodeError} on anything malformed. */
export class ByteReader {
  private offset = 0;
  private readonly input: Uint8Array;

  constructor(input: Uint8Array) {
    this.input = input;
  }

  /** Whether every byte has been read. */
  get done(): boolean {
    return this.offset === this.input.length;
  }

  byte(): number {
    const value = this.input[this.offset];
    if (value === undefined) throw new DecodeError("unexpected end of input");
    this.offset += 1;
    return value;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < VARINT_BYTES_MAX; i += 1) {
      const b = this.byte();
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        // A trailing zero byte would give a second encoding of the same number.
        if (b === 0 && i > 0) throw new DecodeError("non-canonical varint");
        if (!Number.isSafeInteger(value)) throw new DecodeError("varint exceeds the safe-integer range");
        return value;
      }
      scale *= 0x80;
    }
    throw new DecodeError("varint longer than 8 bytes");
  }

  bytes(): Uint8Array {
    const length = this.varint();
    if (this.offset + length > this.input.length) throw new DecodeError("length runs past the end of input");
    const value = this.input.slice(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  string(): string {
    try {
      return textDecoder.decode(this.bytes());
    } catch (error) {
      if (error instanceof DecodeError) throw error;
      throw new DecodeError("string is not valid UTF-8");
    }
  }

  /** Throws unless every byte was consumed: trailing bytes make an encoding non-canonical. */
  end(): void {
    if (!this.done) throw new DecodeError("trailing bytes after the encoded value");
  }
}

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const BASE64URL_INDEX = new Map([...BASE64URL].map((ch, i) => [ch, i]));

/** Unpadded base64url text of `bytes` (RFC 4648 §5), safe in URLs, headers and ETags. */
export function toBase64Url(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i] ?? 0;
    const b = bytes[i + 1] ?? 0;
    const c = bytes[i + 2] ?? 0;
    const n = (a << 16) | (b << 8) | c;
    const chars = i + 2 < bytes.length ? 4 : i + 1 < bytes.length ? 3 : 2;
    for (let k = 0; k < chars; k += 1) out += BASE64URL[(n >> (18 - 6 * k)) & 63];
  }
  return out;
}

/** Decodes unpadded base64url; throws {@link DecodeError} on a bad character or length. */
export function fromBase64Url(text: string): Uint8Array {
  if (text.length % 4 === 1) throw new DecodeError("impossible base64url length");
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (const ch of text) {
    const v = BASE64URL_INDEX.get(ch);
    if (v === undefined) throw new DecodeError("invalid base64url character");
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  // Leftover bits must be zero, or two texts would decode to the same bytes.
  if ((acc & ((1 << bits) - 1)) !== 0) throw new DecodeError("non-canonical base64url padding bits");
  return out;
}

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return textEncoder.encode(text);
}

/** Lexicographic comparison of byte arrays (negative, zero, positive). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i += 1) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** Whether two byte arrays hold the same bytes. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return compareBytes(a, b) === 0;
}

/** Encodes `value` with a `write` function into a fresh buffer. */
export function encodeWith<T>(write: (writer: ByteWriter, value: T) => void, value: T): Uint8Array {
  const writer = new ByteWriter();
  write(writer, value);
  return writer.finish();
}

/** Decodes a whole buffer with a `read` function; trailing bytes are a `DecodeError`. */
export function decodeWith<T>(read: (reader: ByteReader) => T, bytes: Uint8Array): T {
  const reader = new ByteReader(bytes);
  const value = read(reader);
  reader.end();
  return value;
}
