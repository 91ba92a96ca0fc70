// Builds router.js into a WebAssembly component with componentize-js.
// Usage: node build.mjs WIT_DIR OUT.wasm  (plugins/build.sh calls it)
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const [witPath, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: fileURLToPath(new URL('./router.js', import.meta.url)),
  witPath,
  worldName: 'router',
  // No fetch or HTTP handler; console output still goes to the gateway's log.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
