#!/usr/bin/env node
// Tiny static file server for test media (HLS / DASH), with permissive CORS.
//
//   node serve-static.mjs --root <dir> [--port 0] [--host 127.0.0.1]
//                         [--log <file.jsonl>] [--collector-path /cmcd]
//
// * GET / HEAD with Range support, OPTIONS preflight, CORS on every answer
//   (`Access-Control-Allow-Origin: *`): the checker's page runs on another
//   origin (its own local server) and the players fetch media with XHR/fetch.
// * POST <collector-path> (default /cmcd) is a stand-in CMCD collector: the
//   body is recorded and answered with 204.
// * --log appends one JSON line per request: {t, method, url, status, bytes, body?}
//   so a test can check e.g. that every segment request carried CMCD.
// * Once listening it prints exactly one line on stdout:
//   `READY http://127.0.0.1:<port>/` (port 0 = pick a free one).
// * Binds to loopback only by default. Stops on SIGTERM / SIGINT.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const MIME = {
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.mpd': 'application/dash+xml',
  '.m4s': 'video/iso.segment',
  '.mp4': 'video/mp4',
  '.m4a': 'audio/mp4',
  '.m4v': 'video/mp4',
  '.cmfv': 'video/mp4',
  '.cmfa': 'audio/mp4',
  '.ts': 'video/mp2t',
  '.aac': 'audio/aac',
  '.vtt': 'text/vtt',
  '.webm': 'video/webm',
  '.json': 'application/json',
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

function parseArgs(argv) {
  const out = { root: '.', port: 0, host: '127.0.0.1', log: null, collectorPath: '/cmcd' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--root') out.root = next();
    else if (a === '--port') out.port = Number(next());
    else if (a === '--host') out.host = next();
    else if (a === '--log') out.log = next();
    else if (a === '--collector-path') out.collectorPath = next();
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: node serve-static.mjs --root DIR [--port 0] [--host 127.0.0.1] [--log FILE] [--collector-path /cmcd]\n');
      process.exit(0);
    } else throw new Error(`unknown argument: ${a}`);
  }
  return out;
}

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, HEAD, POST, OPTIONS',
  'Access-Control-Allow-Headers': '*',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Accept-Ranges, Content-Type, Date, ETag',
  'Access-Control-Max-Age': '600',
  'Timing-Allow-Origin': '*',
};

export function createStaticServer({ root, log = null, collectorPath = '/cmcd' }) {
  const rootAbs = path.resolve(root);
  const logStream = log ? fs.createWriteStream(log, { flags: 'a' }) : null;
  const record = (entry) => {
    if (logStream) logStream.write(JSON.stringify({ t: Date.now(), ...entry }) + '\n');
  };

  const server = http.createServer((req, res) => {
    const urlObj = new URL(req.url, 'http://localhost');
    const send = (status, headers = {}, body = null) => {
      res.writeHead(status, { ...CORS, 'Cache-Control': 'no-store', ...headers });
      res.end(body);
      record({ method: req.method, url: req.url, status, bytes: body ? body.length : 0 });
    };

    if (req.method === 'OPTIONS') return send(204);

    if (req.method === 'POST') {
      if (urlObj.pathname !== collectorPath && !urlObj.pathname.startsWith(collectorPath + '/')) {
        return send(405, { 'Content-Type': 'text/plain' }, Buffer.from('method not allowed\n'));
      }
      const chunks = [];
      let size = 0;
      req.on('data', (c) => {
        size += c.length;
        if (size <= 1 << 20) chunks.push(c);
      });
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        res.writeHead(204, { ...CORS });
        res.end();
        record({ method: 'POST', url: req.url, status: 204, bytes: size, body });
      });
      return undefined;
    }

    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(405, { 'Content-Type': 'text/plain' }, Buffer.from('method not allowed\n'));
    }

    let rel;
    try {
      rel = decodeURIComponent(urlObj.pathname);
    } catch {
      return send(400, { 'Content-Type': 'text/plain' }, Buffer.from('bad path\n'));
    }
    const file = path.resolve(rootAbs, '.' + path.posix.normalize('/' + rel));
    if (file !== rootAbs && !file.startsWith(rootAbs + path.sep)) {
      return send(403, { 'Content-Type': 'text/plain' }, Buffer.from('forbidden\n'));
    }
    let st;
    try {
      st = fs.statSync(file);
    } catch {
      return send(404, { 'Content-Type': 'text/plain' }, Buffer.from('not found\n'));
    }
    if (!st.isFile()) return send(404, { 'Content-Type': 'text/plain' }, Buffer.from('not found\n'));

    const type = MIME[path.extname(file).toLowerCase()] || 'application/octet-stream';
    const headers = { 'Content-Type': type, 'Accept-Ranges': 'bytes' };
    let start = 0;
    let end = st.size - 1;
    let status = 200;
    const range = req.headers.range;
    if (range) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (!m || (m[1] === '' && m[2] === '')) {
        return send(416, { 'Content-Range': `bytes */${st.size}` });
      }
      if (m[1] === '') {
        start = Math.max(0, st.size - Number(m[2]));
      } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(end, Number(m[2]));
      }
      if (start > end || start >= st.size) {
        return send(416, { 'Content-Range': `bytes */${st.size}` });
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
    }
    const length = st.size === 0 ? 0 : end - start + 1;
    headers['Content-Length'] = String(length);
    res.writeHead(status, { ...CORS, 'Cache-Control': 'no-store', ...headers });
    if (req.method === 'HEAD' || length === 0) {
      res.end();
    } else {
      fs.createReadStream(file, { start, end }).pipe(res);
    }
    record({ method: req.method, url: req.url, status, bytes: req.method === 'HEAD' ? 0 : length });
    return undefined;
  });
  server.on('close', () => logStream && logStream.end());
  return server;
}

const isMain = (() => {
  try {
    return import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
})();
if (isMain) {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`serve-static: ${e.message}\n`);
    process.exit(2);
  }
  const server = createStaticServer(args);
  server.listen(args.port, args.host, () => {
    const { port } = server.address();
    const host = args.host.includes(':') ? `[${args.host}]` : args.host;
    process.stdout.write(`READY http://${host}:${port}/\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
