// A small app for the healer's tests: /health answers, /crash makes the process exit, and it fails to
// start at all when greeting.js is broken (the tests plant such a bug).
const http = require('http');
const greeting = require('./greeting.js');

const port = Number(process.env.PORT || 4111);
http
  .createServer((req, res) => {
    if (req.url === '/health') {
      res.setHeader('content-type', 'application/json');
      res.end('{"success":true}');
    } else if (req.url === '/crash') {
      res.end('crashing\n');
      setTimeout(() => process.exit(1), 20);
    } else {
      res.end(`${greeting}\n`);
    }
  })
  .listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
