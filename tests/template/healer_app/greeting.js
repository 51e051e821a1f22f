module.exports = 'hello from the test app';
