import { Client } from '@elastic/elasticsearch';
import { describe, expect, it } from 'vitest';
import { createClient, loadClientClass } from '../sinks/elasticsearch/client.js';
import { elasticsearchOptions } from '../sinks/elasticsearch/options.js';
import { parseTable } from '../src/option-table.js';

const options = () => parseTable(elasticsearchOptions, { 'es-url': 'http://127.0.0.1:9' }, {});

describe('Elasticsearch client, made on first use', () => {
  it('loads the library\'s Client class with require()', () => {
    expect(loadClientClass()).toBe(Client);
  });

  it('makes the client once, on the first get()', async () => {
    let loads = 0;
    const lazy = createClient(options(), () => { loads++; return loadClientClass(); });
    expect(loads).toBe(0);
    const a = await lazy.get();
    const b = await lazy.get();
    expect(a).toBe(b);
    expect(a).toBeInstanceOf(Client);
    expect(loads).toBe(1);
    await lazy.close();
  });

  it('tries the load again after it failed, instead of failing every later request', async () => {
    let loads = 0;
    const lazy = createClient(options(), () => {
      loads++;
      if (loads === 1) throw new TypeError('lib.Client is not a constructor');
      return loadClientClass();
    });
    await expect(lazy.get()).rejects.toThrow('lib.Client is not a constructor');
    await expect(lazy.get()).resolves.toBeInstanceOf(Client);
    expect(loads).toBe(2);
    await lazy.close();
  });

  it('close() before any request loads nothing', async () => {
    let loads = 0;
    const lazy = createClient(options(), () => { loads++; return loadClientClass(); });
    await lazy.close();
    expect(loads).toBe(0);
  });
});
