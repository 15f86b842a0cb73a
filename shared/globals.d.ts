// The only host globals the pure core may use: the WHATWG text codecs, present in workerd and
// Node alike. Everything else (fetch, timers, crypto, Date.now) stays out of reach on purpose.
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean });
  decode(input?: Uint8Array): string;
}
