import { Serializer, errors } from '@elastic/elasticsearch';
import { describe, expect, it } from 'vitest';
import { createClient, loadSerializerClass } from '../sinks/elasticsearch/client.js';
import { elasticsearchOptions } from '../sinks/elasticsearch/options.js';
import { ALL_DELIVERED, isAllDeliveredBulkAnswer, withBulkShortcut } from '../sinks/elasticsearch/serializer.js';
import { parseTable } from '../src/option-table.js';

describe('bulk answers that report no failed item are not parsed', () => {
  it('recognises the answer filter_path gives when nothing failed, and nothing else', () => {
    expect(isAllDeliveredBulkAnswer('{"errors":false,"items":[{"create":{"status":201}}]}')).toBe(true);
    expect(isAllDeliveredBulkAnswer('{"errors":false}')).toBe(true);
    expect(isAllDeliveredBulkAnswer('{"errors":true,"items":[{"create":{"status":429}}]}')).toBe(false);
    expect(isAllDeliveredBulkAnswer('{"took":3,"errors":false,"items":[]}')).toBe(false); // parsed the long way: still right
    expect(isAllDeliveredBulkAnswer('{"errors":falsehood}')).toBe(false);
    expect(isAllDeliveredBulkAnswer('{"acknowledged":true}')).toBe(false);
  });

  it('answers { errors: false } without parsing the items (which here are not even JSON)', () => {
    const s = new (withBulkShortcut(Serializer))();
    expect(s.deserialize('{"errors":false,"items":[{"create":{"status":201}}, not json')).toEqual({ errors: false });
    expect(s.deserialize('{"errors":false,"items":[]}')).toBe(ALL_DELIVERED);
  });

  it('parses every other answer with the library serializer, errors included', () => {
    const s = new (withBulkShortcut(Serializer))();
    expect(s.deserialize('{"errors":true,"items":[{"create":{"status":429,"error":{"type":"es_rejected_execution_exception"}}}]}'))
      .toEqual({ errors: true, items: [{ create: { status: 429, error: { type: 'es_rejected_execution_exception' } } }] });
    expect(s.deserialize('{"took":3,"errors":false,"items":[{"create":{"status":201}}]}')).toEqual({ took: 3, errors: false, items: [{ create: { status: 201 } }] });
    expect(() => s.deserialize('{"errors":true,"items":[')).toThrow(errors.DeserializationError);
    expect(s.serialize({ a: 1 })).toBe('{"a":1}');
  });

  it('is the serializer of the client the sink makes', async () => {
    expect(loadSerializerClass()).toBe(Serializer);
    const lazy = createClient(parseTable(elasticsearchOptions, { 'es-url': 'http://127.0.0.1:9' }, {}));
    const client = await lazy.get();
    expect(client.serializer.deserialize('{"errors":false,"items":[not json')).toBe(ALL_DELIVERED);
    await lazy.close();
  });
});
