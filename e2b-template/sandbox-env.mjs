// Preloaded (NODE_OPTIONS=--import, set by env.sh when $SHMASTRA_ENV_FILE is) into the Node processes of
// a sandbox made from a snapshot in which the app was already started (the E2B template): a snapshot
// cannot hold a sandbox's own settings (its MASTRA_AUTH_TOKEN, virtual key, gateway URLs, public
// origin), so the cloud writes them, as one JSON object of strings, to $SHMASTRA_ENV_FILE right after
// creating the sandbox. The app's server process (what `mastra dev` runs: `.mastra/output/index.mjs`)
// stops here, before any of the app's code runs, until that file exists, then takes its values into
// process.env; while it waits, `<file>.waiting` exists (the template's ready check). So the snapshot
// holds everything that is the same for every sandbox (the CLI loaded, the bundle built) and the app
// itself still reads its settings from process.env, unchanged. Every other Node process (the mastra
// CLI, pm2, npm) and a server started once the file exists pass straight through.
import fs from 'node:fs';

const file = process.env.SHMASTRA_ENV_FILE;
const entry = process.argv[1] ?? '';
const POLL_MS = 20;

function settings() {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // still being written: a cut-off JSON object never parses
  }
}

if (file && /[\\/]\.mastra[\\/]output[\\/]index\.mjs$/.test(entry)) {
  const waiting = `${file}.waiting`;
  let values = settings();
  if (values === undefined) {
    fs.writeFileSync(waiting, `${process.pid}\n`);
    while ((values = settings()) === undefined) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    fs.rmSync(waiting, { force: true });
  }
  for (const [name, value] of Object.entries(values)) {
    if (typeof value === 'string') process.env[name] = value;
  }
}
