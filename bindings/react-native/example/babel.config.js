// React Native's own preset: Metro compiles the app and, through the symlink npm makes for
// `file:..`, the library's TypeScript sources (its "react-native" entry point).
module.exports = {
  presets: ["module:@react-native/babel-preset"],
};
