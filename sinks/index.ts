/**
 * The sink registry: every sink shiplog can ship to. A new sink is one module implementing
 * SinkDefinition (sinks/sink.ts) and one line here; the core does not change.
 */
import { elasticsearchSink } from './elasticsearch.js';
import { fileSink } from './file.js';
import type { SinkDefinition } from './sink.js';

export const sinkDefinitions: readonly SinkDefinition[] = [fileSink, elasticsearchSink];
