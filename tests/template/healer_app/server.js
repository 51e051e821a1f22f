// A small app for the healer's tests: /health answers; /crash makes the process exit; /spin keeps a
// core busy; /grow holds on to memory; a HANG file makes it "build" forever without listening; and it
// fails to start at all when greeting.js is broken (the tests plant such bugs).
const fs = require('fs');
const http = require('http');
const greeting = require('./greeting.js');

const port = Number(process.env.PORT || 4111);
const held = [];

if (fs.existsSync('HANG')) {
  console.log('Bundling the app...');
  setInterval(() => {}, 1000);
} else {
  http
    .createServer((req, res) => {
      if (req.url === '/health') {
        res.setHeader('content-type', 'application/json');
        res.end('{"success":true}');
      } else if (req.url === '/crash') {
        res.end('crashing\n');
        setTimeout(() => process.exit(1), 20);
      } else if (req.url === '/spin') {
        res.end('spinning\n');
        setInterval(() => {
          const until = Date.now() + 95;
          while (Date.now() < until);
        }, 100);
      } else if (req.url === '/grow') {
        held.push(Buffer.alloc(200 * 2 ** 20, 1));
        res.end('grown\n');
      } else {
        res.end(`${greeting}\n`);
      }
    })
    .listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
}
