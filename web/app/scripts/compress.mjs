// After `vite build`: a .gz beside every text file of dist/ worth compressing, which the API serves to clients
// that accept gzip (aiohttp's FileResponse picks the sibling), so nothing is compressed per request.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const TEXT = /\.(js|mjs|css|html|svg|json|txt|map)$/;

function* files(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* files(full);
    else if (TEXT.test(entry.name)) yield full;
  }
}

let raw = 0;
let packed = 0;
for (const file of files(dist)) {
  const body = fs.readFileSync(file);
  if (body.length < 512) continue;
  const gz = zlib.gzipSync(body, { level: 9 });
  fs.writeFileSync(`${file}.gz`, gz);
  raw += body.length;
  packed += gz.length;
}
console.log(`compress: ${(raw / 1024).toFixed(1)} KB of text, ${(packed / 1024).toFixed(1)} KB gzipped`);
