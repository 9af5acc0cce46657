// The `mtls-proxy` command line (PRODUCT.md, "Command line"). Exit codes: 0 ok, 1 bad config
// or certificates, 2 bad usage. Expected failures print one line each to stderr, no stack.
import cluster from 'node:cluster';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { checkCertificates, type Problem } from './certs/inspect.ts';
import { ConfigErrors, loadConfigFile, type LoadedConfig } from './config/load.ts';
import type { SelftestReport } from './selftest/run.ts';
import { ConfigError, isProxyError } from './errors.ts';
import { VERSION } from './paths.ts';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const BCRYPT_COST = 12;
// bcrypt uses the first 72 bytes only; accepting more would let a longer password's tail be anything.
const BCRYPT_MAX_BYTES = 72;

/** An expected failure: `message` is printed as one line and the process exits with `exitCode`. */
class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Problems were already printed; only the exit code is left to set. */
class ReportedFailure extends Error {}

/** The server failed while starting; what it already opened may keep the event loop alive. */
class StartFailure extends Error {}

// The commands' modules are imported when the command runs, so `check`, `pki init` and
// `hash-password` load none of the proxy.
interface BcryptModule {
  hash(data: string, rounds: number): Promise<string>;
}

async function importModule(specifier: string): Promise<Record<string, unknown>> {
  let mod: unknown;
  try {
    mod = await import(specifier);
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? err.code : null;
    if (code === 'ERR_MODULE_NOT_FOUND') throw new CliError(`${specifier} is not available in this build`, EXIT_FAILURE);
    throw err;
  }
  return typeof mod === 'object' && mod !== null ? (mod as Record<string, unknown>) : {};
}

/** `mod` once it is known to have a function `name`; T describes the rest of its shape. */
function withFunction<T>(mod: Record<string, unknown>, name: string, what: string): T {
  if (typeof mod[name] !== 'function') throw new CliError(`${what} does not export ${name}()`, EXIT_FAILURE);
  return mod as T;
}

async function loadBcrypt(): Promise<BcryptModule> {
  const mod = await importModule('bcrypt');
  // A CommonJS module: its exports arrive as the ESM default export.
  const exports = typeof mod.default === 'object' && mod.default !== null ? (mod.default as Record<string, unknown>) : mod;
  return withFunction<BcryptModule>(exports, 'hash', 'bcrypt');
}


export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof StartFailure) process.exit(exitCodeFor(err.cause));
    process.exitCode = exitCodeFor(err);
  }
}

function exitCodeFor(err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander printed its own message; --help and --version are successes.
    return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : EXIT_USAGE;
  }
  if (err instanceof ReportedFailure) return EXIT_FAILURE;
  if (err instanceof ConfigErrors) {
    for (const e of err.errors) printProblem('error', e.path, e.line, e.message);
    return EXIT_FAILURE;
  }
  if (err instanceof ConfigError) {
    printProblem('error', err.path, err.line, err.message);
    return EXIT_FAILURE;
  }
  if (err instanceof CliError) {
    process.stderr.write(`error: ${err.message}\n`);
    return err.exitCode;
  }
  // Start-up failures an operator can act on: a ProxyError, or a system error such as
  // EADDRINUSE from listen(), which carries its own clear message.
  if (isProxyError(err) || (err instanceof Error && 'syscall' in err && 'code' in err)) {
    process.stderr.write(`error: ${err.message}\n`);
    return EXIT_FAILURE;
  }
  // Not an expected failure: the stack is what a bug report needs.
  process.stderr.write(`mtls-proxy: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return EXIT_FAILURE;
}

function printProblem(level: Problem['level'], path: string, line: number | null, message: string): void {
  const where = path === '' ? '' : `${path}${line === null ? '' : ` (line ${line})`}: `;
  process.stderr.write(`${level}: ${where}${message}\n`);
}

function buildProgram(): Command {
  // Set-but-empty counts as unset, as shells treat it.
  const fromEnv = process.env.MTLS_PROXY_CONFIG;
  const defaultConfig = fromEnv !== undefined && fromEnv !== '' ? fromEnv : './mtls-proxy.toml';
  const program = new Command('mtls-proxy');
  // Set before adding commands: subcommands copy these settings when created.
  program
    .exitOverride()
    .description('A streaming reverse proxy for mutual TLS')
    .version(VERSION, '-V, --version')
    .showSuggestionAfterError(true);

  program
    .command('start')
    .description('run the proxy with a TOML config')
    .option('-c, --config <file>', 'config file (or $MTLS_PROXY_CONFIG)', defaultConfig)
    .action(async (opts: { config: string }) => {
      // server.workers > 1: node:cluster forks this same command line; the worker takes its
      // config from the primary (which checked it), so all workers run the same one.
      if (cluster.isWorker) {
        const worker = await import('./cluster/worker.ts');
        await worker.runWorker();
        return;
      }
      const { config } = loadAndCheck(opts.config, { quietWhenOk: true });
      try {
        if (config.server.workers !== 1) {
          const primary = await import('./cluster/primary.ts');
          const count = primary.workerCount(config.server.workers, availableParallelism());
          if (count > 1) {
            await primary.runPrimary(config, count);
            return;
          }
        }
        const server = await import('./server.ts');
        await server.runServer(config);
      } catch (err) {
        throw new StartFailure('start failed', { cause: err });
      }
    });

  program
    .command('demo')
    .description('run a self-contained demo: dev PKI, mTLS echo upstream, the proxy (L7 and L4 listeners)')
    .action(async () => {
      const demo = await import('./demo.ts');
      try {
        await demo.runDemo();
      } catch (err) {
        throw new StartFailure('demo failed', { cause: err });
      }
    });

  program
    .command('check')
    .description('validate a config and its certificates; exit 1 on any error')
    .option('-c, --config <file>', 'config file (or $MTLS_PROXY_CONFIG)', defaultConfig)
    .action((opts: { config: string }) => {
      loadAndCheck(opts.config, { quietWhenOk: false });
    });

  program
    .command('selftest')
    .description('replay the bundled smuggling/conformance corpus through a listener of that config against a recording origin; exit 1 on any fail')
    .option('-c, --config <file>', 'config file (or $MTLS_PROXY_CONFIG)', defaultConfig)
    .action(async (opts: { config: string }) => {
      const { config } = loadConfigFile(opts.config);
      const selftest = await import('./selftest/run.ts');
      process.stderr.write('selftest: the first http listener on 127.0.0.1 (ephemeral port), its upstreams on a recording origin, TLS from a throwaway PKI\n');
      let report: SelftestReport;
      try {
        report = await selftest.runSelftest(config);
      } catch (err) {
        throw new StartFailure('selftest failed', { cause: err });
      }
      process.stdout.write(selftest.formatReport(report));
      if (report.failed > 0) throw new ReportedFailure(`${report.failed} failed`);
    });

  program
    .command('hash-password')
    .description('read a password from stdin and print its bcrypt hash for admin.password_hash')
    .action(async () => {
      const password = process.stdin.isTTY ? await promptTwice() : dropOneNewline(await readAll(process.stdin));
      if (password === '') throw new CliError('empty password: pipe the password on stdin, e.g. `printf %s "$PW" | mtls-proxy hash-password`', EXIT_USAGE);
      if (Buffer.byteLength(password) > BCRYPT_MAX_BYTES) throw new CliError(`password is longer than ${BCRYPT_MAX_BYTES} bytes, which bcrypt would silently cut`, EXIT_USAGE);
      const bcrypt = await loadBcrypt();
      process.stdout.write(`${await bcrypt.hash(password, BCRYPT_COST)}\n`);
    });

  const pki = program.command('pki').description('development PKI helpers');
  pki
    .command('init')
    .description('write a dev CA, a server cert (localhost, 127.0.0.1), a client cert and an example config')
    .requiredOption('--out <dir>', 'folder to write into (created if missing)')
    .option('--force', 'overwrite existing files', false)
    .action(async (opts: { out: string; force: boolean }) => {
      await pkiInit(resolve(opts.out), opts.force);
    });

  return program;
}

/** Load a config and run the certificate checks, printing every problem with its key path. */
function loadAndCheck(file: string, opts: { quietWhenOk: boolean }): LoadedConfig {
  const loaded = loadConfigFile(file);
  const problems = checkCertificates(loaded.config);
  for (const p of problems) printProblem(p.level, p.path, loaded.lineOf(p.path), p.message);
  const errors = problems.filter((p) => p.level === 'error').length;
  const warnings = problems.length - errors;
  const summary = `${count(errors, 'error')}, ${count(warnings, 'warning')}`;
  if (errors > 0) {
    process.stderr.write(`${loaded.config.source ?? file}: ${summary}\n`);
    throw new ReportedFailure(summary);
  }
  if (!opts.quietWhenOk) {
    const { listeners, upstreams } = loaded.config;
    const shape = `${count(listeners.length, 'listener')}, ${count(upstreams.size, 'upstream')}`;
    process.stdout.write(`config OK: ${loaded.config.source ?? file} (${shape}; ${count(warnings, 'warning')})\n`);
  }
  return loaded;
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** Exactly one trailing newline goes, as `echo` adds one; any other whitespace is part of the password. */
export function dropOneNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  if (text.endsWith('\n')) return text.slice(0, -1);
  return text;
}

async function promptTwice(): Promise<string> {
  const first = await promptHidden('Password: ');
  const second = await promptHidden('Repeat password: ');
  if (first !== second) throw new CliError('the passwords do not match', EXIT_USAGE);
  return first;
}

// Raw mode so the password is not echoed to the terminal (or its scrollback).
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolvePrompt, reject) => {
    let chars: string[] = [];
    const finish = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          finish();
          return resolvePrompt(chars.join(''));
        }
        if (ch === '\u0003') {
          finish();
          return reject(new CliError('cancelled', EXIT_USAGE));
        }
        if (ch === '\u007f' || ch === '\b') chars = chars.slice(0, -1);
        else chars.push(ch);
      }
    };
    stdin.on('data', onData);
  });
}

async function pkiInit(dir: string, force: boolean): Promise<void> {
  const { createDevPki } = await import('./pki/dev-pki.ts');
  const names = ['ca.pem', 'ca-key.pem', 'server.pem', 'server-key.pem', 'client.pem', 'client-key.pem', 'mtls-proxy.toml'];
  const existing = names.filter((name) => existsSync(join(dir, name)));
  if (existing.length > 0 && !force) {
    throw new CliError(`refusing to overwrite ${existing.map((n) => join(dir, n)).join(', ')} (use --force)`, EXIT_USAGE);
  }
  const pki = await createDevPki();
  const files: Array<[name: string, content: string, secret: boolean]> = [
    ['ca.pem', pki.ca.cert, false],
    ['ca-key.pem', pki.ca.key, true],
    ['server.pem', pki.server.cert, false],
    ['server-key.pem', pki.server.key, true],
    ['client.pem', pki.client.cert, false],
    ['client-key.pem', pki.client.key, true],
    ['mtls-proxy.toml', EXAMPLE_CONFIG, false],
  ];
  mkdirSync(dir, { recursive: true });
  for (const [name, content, secret] of files) {
    const path = join(dir, name);
    writeFileSync(path, content, { mode: secret ? 0o600 : 0o644 });
    // `mode` applies only when the file is created; --force may be replacing a looser one.
    if (secret) chmodSync(path, 0o600);
    process.stdout.write(`wrote ${path}${secret ? ' (mode 0600)' : ''}\n`);
  }
  const config = join(dir, 'mtls-proxy.toml');
  process.stdout.write(`next: mtls-proxy check -c ${config}\n`);
  process.stdout.write(`      curl --cacert ${join(dir, 'ca.pem')} --cert ${join(dir, 'client.pem')} --key ${join(dir, 'client-key.pem')} https://localhost:8443/\n`);
}

const EXAMPLE_CONFIG = `# Example written by \`mtls-proxy pki init\`: a development setup only.
# Paths are relative to this file's folder. Reference: docs/configuration.md

[log]
level = "info"
format = "json"

[admin]
address = "127.0.0.1:9901"
username = "admin"
# password_hash = "..."   # from \`mtls-proxy hash-password\`; without it /api answers 401

[listeners.edge]
address = "127.0.0.1:8443"
mode = "http"
upstream = "backend"
  [listeners.edge.tls]
  cert = "server.pem"
  key = "server-key.pem"
  client_ca = "ca.pem"                  # client certificates must chain to this CA
  client_auth = "require"
  allow = ["URI=spiffe://demo/client"]  # the client certificate written next to this file

[upstreams.backend]
endpoints = ["127.0.0.1:9443"]           # an HTTPS server that trusts ca.pem
  [upstreams.backend.tls]
  cert = "client.pem"                    # the proxy's client certificate toward the upstream
  key = "client-key.pem"
  ca = "ca.pem"
  server_name = "localhost"
`;
