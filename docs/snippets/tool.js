// A JavaScript guest of the documentation's examples: keywords arrive as a trailing object.
function add(a, b, options = {}) {
  return (a + b) * (options.scale ?? 1);
}

console.log("tool.js ran");
