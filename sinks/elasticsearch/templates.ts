/**
 * Opt-in (`es-templates`) mapping improvements, installed create-only in the background:
 *  - component template `<type>-<dataset>@custom` (or `<index prefix>@custom`): `container.labels` as
 *    `flattened` (one field however many label keys exist), `stream`, `tag` and `log.flags` as keyword,
 *    `@timestamp` as `date_nanos` (keeps the order of lines within a millisecond);
 *  - index template `shiplog-<base>` for the target's pattern at priority 150 (above the built-in
 *    `logs` template's 100), composed of the built-in `logs@*` / `ecs@mappings` templates plus the
 *    component above, so everything else stays as Elastic ships it.
 * Both are sent with `create=true`: a template an operator already has (or edited) is never touched.
 * Afterwards the installer asks Elasticsearch whether `container.labels` really is `flattened` on the
 * index the next documents go to; only then may label keys keep their dots (document.ts).
 */
import type { Logger } from 'pino';
import type { LabelMode } from './document.js';
import { classifyRequestError } from './bulk.js';
import { RetryableSinkError } from '../sink.js';
import { IndexNamer, indexGlob } from './target.js';
import type { Target } from './target.js';
import { bigIntToParts } from '../../src/time.js';

type JsonObject = Record<string, unknown>;

export interface TemplatePlan {
  readonly componentName: string;
  readonly component: JsonObject;
  readonly indexTemplateName: string;
  readonly indexTemplate: JsonObject;
}

const META = { managed_by: 'shiplog', description: 'Installed by the shiplog Docker logging plugin (es-templates=true). shiplog never overwrites it: edit freely.' };

export const CUSTOM_MAPPINGS: JsonObject = {
  properties: {
    '@timestamp': { type: 'date_nanos' },
    container: { properties: { labels: { type: 'flattened' } } },
    stream: { type: 'keyword' },
    tag: { type: 'keyword' },
    log: { properties: { flags: { type: 'keyword' } } },
  },
};

/** The Elastic-shipped parts of the built-in `logs` index template (ES ≥ 8.11 names). */
const LOGS_BUILTIN = ['logs@mappings', 'logs@settings', 'logs@custom', 'ecs@mappings'];

/** The templates for a target, or a sentence saying why none can be made. */
export function templatePlan(target: Target): TemplatePlan | string {
  let base: string;
  let patterns: string[];
  if (target.dataStream && target.dataStreamParts !== undefined) {
    base = `${target.dataStreamParts.type}-${target.dataStreamParts.dataset}`;
    patterns = [`${base}-*`];
  } else {
    const glob = indexGlob(target.pattern);
    base = glob.replace(/[-._*]+$/, '');
    if (base === '') return `es-index ${JSON.stringify(target.pattern)} starts with a date token, so no index pattern narrower than "*" fits it`;
    patterns = [glob];
  }
  const componentName = `${base}@custom`;
  const logs = target.dataStream && target.dataStreamParts?.type === 'logs';
  const indexTemplate: JsonObject = {
    index_patterns: patterns,
    priority: 150,
    composed_of: logs ? [...LOGS_BUILTIN, componentName] : [componentName],
    ignore_missing_component_templates: logs ? ['logs@custom', componentName] : [componentName],
    _meta: META,
  };
  if (target.dataStream) indexTemplate['data_stream'] = {};
  return {
    componentName,
    component: { template: { mappings: CUSTOM_MAPPINGS }, _meta: META },
    indexTemplateName: `shiplog-${base}`,
    indexTemplate,
  };
}

export interface HttpAnswer {
  readonly statusCode: number;
  readonly body: unknown;
}

/** One JSON request to Elasticsearch; resolves with any HTTP status, rejects on transport failures. */
export type EsRequest = (method: 'GET' | 'PUT' | 'POST', path: string, querystring?: Readonly<Record<string, string>>, body?: JsonObject) => Promise<HttpAnswer>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function at(v: unknown, ...path: string[]): unknown {
  let cur = v;
  for (const key of path) {
    if (!isObject(cur)) return undefined;
    cur = cur[key];
  }
  return cur;
}

function errorText(body: unknown): string {
  const type = at(body, 'error', 'type');
  const reason = at(body, 'error', 'reason');
  return `${typeof type === 'string' ? type : 'error'}${typeof reason === 'string' ? `: ${reason}` : ''}`;
}

class TemplateRequestError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
  }
}

/** `type` of `container.labels` in a `mappings` object (`properties.container.properties.labels.type`). */
export function labelsTypeIn(mappings: unknown): unknown {
  return at(mappings, 'properties', 'container', 'properties', 'labels', 'type');
}

/** The highest-generation backing index of a data stream (`.ds-<name>-<date>-000007`): its write index. */
function writeIndexOf(names: string[]): string | undefined {
  return [...names].sort((a, b) => a.slice(-6).localeCompare(b.slice(-6)) || a.localeCompare(b)).at(-1);
}

export type InstallState = 'idle' | 'running' | 'done' | 'failed-retryable' | 'failed';

export class TemplateInstaller {
  private state: InstallState = 'idle';
  private mode: LabelMode = 'normalised';
  private running: Promise<void> | undefined;
  private lastAttempt = 0;
  private lastWarning = '';
  private closed = false;

  constructor(
    private readonly request: EsRequest,
    private readonly plan: TemplatePlan,
    private readonly target: Target,
    private readonly logger: Logger,
    /** A failed attempt that may succeed later is retried by a write this long after it. */
    private readonly retryAfterMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get labelMode(): LabelMode {
    return this.mode;
  }

  get status(): InstallState {
    return this.state;
  }

  /** Starts the first attempt without waiting for it. */
  start(): void {
    if (this.state === 'idle' && !this.closed) this.running = this.attempt();
  }

  /**
   * Awaited by writes: waits for an attempt in flight (so a new data stream is created from the
   * templates, not before them), and starts a new one when the last failed for a passing reason.
   * Never rejects.
   */
  async beforeWrite(): Promise<void> {
    if (this.state === 'idle') this.start();
    else if (this.running === undefined && this.state === 'failed-retryable' && this.now() - this.lastAttempt >= this.retryAfterMs) {
      this.running = this.attempt();
    }
    if (this.running !== undefined) await this.running;
  }

  close(): void {
    this.closed = true;
  }

  private async attempt(): Promise<void> {
    this.state = 'running';
    this.lastAttempt = this.now();
    try {
      const component = await this.putCreateOnly('component template', `/_component_template/${encodeURIComponent(this.plan.componentName)}`, this.plan.component);
      const index = await this.putCreateOnly('index template', `/_index_template/${encodeURIComponent(this.plan.indexTemplateName)}`, this.plan.indexTemplate);
      const { mode, why } = await this.liveLabelMode();
      this.mode = mode;
      this.state = 'done';
      this.logger.info({ componentTemplate: this.plan.componentName, component, indexTemplate: this.plan.indexTemplateName, index, labelKeys: mode }, `elasticsearch templates ready; container.labels keys ${mode === 'dotted' ? 'keep their dots' : 'have dots replaced by _'}: ${why}`);
    } catch (err) {
      const retryable = err instanceof TemplateRequestError ? err.retryable : classifyRequestError(err) instanceof RetryableSinkError;
      this.state = retryable ? 'failed-retryable' : 'failed';
      const message = err instanceof Error ? err.message : String(err);
      if (!this.closed && message !== this.lastWarning) {
        this.lastWarning = message;
        this.logger.warn({ componentTemplate: this.plan.componentName, indexTemplate: this.plan.indexTemplateName, willRetry: retryable }, `could not install elasticsearch templates (ingestion goes on; label keys have dots replaced by _): ${message}`);
      }
    } finally {
      this.running = undefined;
    }
  }

  private async putCreateOnly(what: string, path: string, body: JsonObject): Promise<'created' | 'exists'> {
    const answer = await this.request('PUT', path, { create: 'true' }, body);
    if (answer.statusCode >= 200 && answer.statusCode < 300) return 'created';
    const text = errorText(answer.body);
    // ES says `illegal_argument_exception: ... already exists`; accept the dedicated type too.
    if (answer.statusCode === 400 && (/already exists/.test(text) || text.startsWith('resource_already_exists_exception'))) return 'exists';
    const s = answer.statusCode;
    throw new TemplateRequestError(`PUT ${what} answered ${s}: ${text}`, s === 408 || s === 429 || s >= 500);
  }

  /** Where the next documents go, as a concrete index or data stream name. */
  private concreteName(): string {
    if (!this.target.dated) return this.target.pattern;
    const ns = BigInt(this.now()) * 1_000_000n;
    return new IndexNamer(this.target.pattern).nameFor(bigIntToParts(ns));
  }

  private async liveLabelMode(): Promise<{ mode: LabelMode; why: string }> {
    const name = this.concreteName();
    const live = await this.request('GET', `/${encodeURIComponent(name)}/_mapping/field/container.labels`);
    if (live.statusCode === 200 && isObject(live.body) && Object.keys(live.body).length > 0) {
      const indices = Object.keys(live.body);
      const writeIndex = (this.target.dataStream ? writeIndexOf(indices) : indices[0]) ?? '';
      const type = at(live.body, writeIndex, 'mappings', 'container.labels', 'mapping', 'labels', 'type');
      return type === 'flattened'
        ? { mode: 'dotted', why: `${writeIndex} maps container.labels as flattened` }
        : { mode: 'normalised', why: `${writeIndex} already exists without a flattened container.labels (roll it over to apply the templates)` };
    }
    if (live.statusCode !== 200 && live.statusCode !== 404) throw new TemplateRequestError(`GET field mapping answered ${live.statusCode}: ${errorText(live.body)}`, live.statusCode === 429 || live.statusCode >= 500);
    const simulated = await this.request('POST', `/_index_template/_simulate_index/${encodeURIComponent(name)}`);
    if (simulated.statusCode !== 200) throw new TemplateRequestError(`simulating the template of ${name} answered ${simulated.statusCode}: ${errorText(simulated.body)}`, simulated.statusCode === 429 || simulated.statusCode >= 500);
    return labelsTypeIn(at(simulated.body, 'template', 'mappings')) === 'flattened'
      ? { mode: 'dotted', why: `${name} will be created with a flattened container.labels` }
      : { mode: 'normalised', why: `the templates that apply to ${name} do not map container.labels as flattened` };
  }
}
