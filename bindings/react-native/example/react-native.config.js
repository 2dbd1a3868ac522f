// Autolinking: the native side of @meridian/react-native (its podspec and android/ folder)
// lives in the folder above this app.
const path = require("path");
const pkg = require("../package.json");

module.exports = {
  dependencies: {
    [pkg.name]: {
      root: path.join(__dirname, ".."),
      platforms: {
        ios: {},
        android: {},
      },
    },
  },
};
