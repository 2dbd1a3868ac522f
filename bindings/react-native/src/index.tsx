// @meridian/react-native: the generated bindings (installed into the app's JS runtime by the
// turbo module) and the helpers of ./meridian.
export * from "./bindings";
export { default } from "./bindings";
export * from "./meridian";
