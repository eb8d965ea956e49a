/**
 * libbpf prints through a callback with a va_list; we format it with vsnprintf and keep the recent
 * lines, so a failed load can carry the verifier's explanation in its error instead of on stderr.
 */
import { koffi, libbpf, libcCalls, printFn } from './libbpf.js';

const LIBBPF_DEBUG = 2;
const KEPT_LINES = 2000;
/* Verifier logs arrive as one message of up to megabytes; the error is at its end. */
const FORMAT_BUFFER_BYTES = 8 << 20;
let formatBuffer: Buffer | undefined;
const lines: string[] = [];
let linesSeen = 0;
let installed = false;

function onLibbpfPrint(level: number, format: string, args: unknown): number {
  if (level === LIBBPF_DEBUG && !process.env.XLB_LIBBPF_DEBUG) return 0;
  formatBuffer ??= Buffer.alloc(FORMAT_BUFFER_BYTES);
  const length = libcCalls.vsnprintf(formatBuffer, formatBuffer.length, format, args) as number;
  const text = formatBuffer.toString('utf8', 0, Math.min(Math.max(length, 0), formatBuffer.length - 1));
  for (const line of text.trimEnd().split('\n')) {
    lines.push(line);
    linesSeen += 1;
  }
  if (lines.length > KEPT_LINES) lines.splice(0, lines.length - KEPT_LINES);
  if (process.env.XLB_LIBBPF_DEBUG) process.stderr.write(`libbpf: ${text}`);
  return 0;
}

export function installLibbpfLog(): void {
  if (installed) return;
  installed = true;
  libbpf.libbpf_set_print(koffi.register(onLibbpfPrint, koffi.pointer(printFn)));
}

/** A mark before an operation; `since(mark)` is what libbpf said during it. */
export function libbpfLogMark(): number {
  return linesSeen;
}

export function libbpfLogSince(mark: number, maxLines = 60): string {
  const said = lines.slice(Math.max(0, lines.length - (linesSeen - mark)));
  return said.slice(-maxLines).join('\n');
}
