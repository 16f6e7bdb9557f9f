import { pino, type Logger, type LoggerOptions } from 'pino';
import { Writable } from 'node:stream';
import type { Config } from './config/types.js';

/** Values that must never reach a log line, whatever object is logged. */
const REDACT = [
  'password',
  '*.password',
  'secretkey',
  '*.secretkey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'headers.cookie',
  '*.headers.cookie',
];

const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** `time level msg key=value ...`: a readable line, one per record (distribution's text formatter). */
export function formatTextLine(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { time, level, msg, ...rest } = rec;
  const parts = [
    typeof time === 'number' ? new Date(time).toISOString() : String(time ?? ''),
    (LEVEL_NAMES[level as number] ?? String(level)).toUpperCase().padEnd(5),
    String(msg ?? ''),
  ];
  for (const [k, v] of Object.entries(rest)) {
    if (v === undefined) continue;
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    parts.push(`${k}=${/[\s"=]/.test(s) ? JSON.stringify(s) : s}`);
  }
  return parts.join(' ') + '\n';
}

class TextStream extends Writable {
  constructor(private readonly out: NodeJS.WritableStream) {
    super({ decodeStrings: false });
  }
  override _write(chunk: string | Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const s = chunk.toString();
    this.out.write(
      s
        .split('\n')
        .filter(Boolean)
        .map(formatTextLine)
        .join(''),
    );
    cb();
  }
}

export function createLogger(log: Config['log'], dest: NodeJS.WritableStream = process.stderr): Logger {
  const opts: LoggerOptions = {
    level: log.level,
    base: { ...log.fields },
    redact: { paths: REDACT, censor: '***' },
    timestamp: pino.stdTimeFunctions.epochTime,
  };
  if (log.formatter === 'text') return pino(opts, new TextStream(dest));
  return pino({ ...opts, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}
