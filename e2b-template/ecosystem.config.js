// The pm2 apps of a sandbox: `shmastra`, the app's dev server on $PORT, and `healer` beside it.
// The healer owns the app's restarts (autorestart is off), so every restart is one it reports to the
// cloud; pm2 kills the whole process tree of an app on stop/restart (treekill).
const fs = require('fs');
const path = require('path');

const home = process.env.SANDBOX_HOME || '/home/user';
const project = path.join(home, 'shmastra');
const logs = path.join(home, 'logs');

function devCommand() {
  if (process.env.SHMASTRA_DEV_COMMAND) return process.env.SHMASTRA_DEV_COMMAND;
  if (fs.existsSync(path.join(project, 'pnpm-lock.yaml'))) return 'pnpm dev';
  return 'npm run dev';
}

const [script, ...args] = devCommand().split(' ');

module.exports = {
  apps: [
    {
      name: 'shmastra',
      cwd: project,
      script,
      args,
      interpreter: 'none',
      autorestart: false,
      treekill: true,
      kill_timeout: 5000,
      max_memory_restart: process.env.SHMASTRA_MAX_MEMORY || '3800M',
      out_file: path.join(logs, 'shmastra.log'),
      error_file: path.join(logs, 'shmastra.log'),
      env: { PORT: process.env.PORT || '4111', MASTRA_TELEMETRY_DISABLED: '1' },
    },
    {
      name: 'healer',
      cwd: home,
      script: path.join(__dirname, 'healer', 'main.py'),
      interpreter: process.env.SHMASTRA_PYTHON || 'python3',
      autorestart: true,
      max_restarts: 5,
      out_file: path.join(logs, 'healer.log'),
      error_file: path.join(logs, 'healer.log'),
      env: { PYTHONUNBUFFERED: '1' },
    },
  ],
};
