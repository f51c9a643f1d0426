/**
 * V8 flags that follow from shiplog's settings. NODE_OPTIONS refuses most V8 flags, so these are set
 * from inside the process, once, before the first FIFO is read (V8 reads them when it decides, so a
 * flag set at start applies to every later collection).
 */
import v8 from 'node:v8';
import type { Settings } from './settings.js';

export function v8FlagsFor(settings: Pick<Settings, 'incremental-marking'>): string[] {
  return settings['incremental-marking'] ? [] : ['--no-incremental-marking'];
}

/** Sets the flags; returns them (for the start-up log line). */
export function applyV8Flags(settings: Pick<Settings, 'incremental-marking'>): string[] {
  const flags = v8FlagsFor(settings);
  for (const flag of flags) v8.setFlagsFromString(flag);
  return flags;
}
