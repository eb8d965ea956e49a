/** The agent's log: one line per event on stderr, each with an ISO timestamp and a level. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export type LogLevel = keyof Logger;

export interface LogSink {
  write(text: string): unknown;
}

/** A logger writing `2025-01-02T03:04:05.678Z warn  message` lines; multi-line messages are indented. */
export function createLogger(sink: LogSink = process.stderr, now: () => Date = () => new Date()): Logger {
  const line =
    (level: LogLevel) =>
    (message: string): void => {
      void sink.write(`${now().toISOString()} ${level.padEnd(5)} ${message.replace(/\n/g, '\n    ')}\n`);
    };
  return { info: line('info'), warn: line('warn'), error: line('error') };
}

/** A logger that keeps its lines in memory (tests). */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const keep =
    (level: LogLevel) =>
    (message: string): void => {
      lines.push(`${level}: ${message}`);
    };
  return { lines, info: keep('info'), warn: keep('warn'), error: keep('error') };
}
