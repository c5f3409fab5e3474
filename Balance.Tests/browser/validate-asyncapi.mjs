// Validates an AsyncAPI document with the AsyncAPI parser; prints every diagnostic, exits 1 on any error.
import { readFile } from 'node:fs/promises';
import { Parser } from '@asyncapi/parser';

const file = process.argv[2];
const { document, diagnostics } = await new Parser().parse(await readFile(file, 'utf8'), { source: file });
const severities = ['error', 'warning', 'info', 'hint'];
for (const d of diagnostics) console.log(`${severities[d.severity]} ${d.code} at ${d.path.join('.')}: ${d.message}`);
if (!document || diagnostics.some(d => d.severity === 0)) process.exit(1);
const channel = document.channels().get('player');
console.log(`ok: AsyncAPI ${document.version()}, ${channel.address()}, ${document.operations().length} operations, ${document.allMessages().length} messages`);
