// The generated bindings import their siblings without a file extension ("./meridian_ffi"),
// as Metro and bundlers allow; Node's ES module loader wants one. This resolve hook (Node's
// module customization hooks) retries such a relative import with ".js". Registered by
// `node --import ./test/extensionless.mjs`.

import { register } from "node:module";

register(
  "data:text/javascript," +
    encodeURIComponent(`
      export async function resolve(specifier, context, next) {
        try {
          return await next(specifier, context);
        } catch (error) {
          const relative = specifier.startsWith("./") || specifier.startsWith("../");
          if (error?.code !== "ERR_MODULE_NOT_FOUND" || !relative || specifier.endsWith(".js")) {
            throw error;
          }
          return next(specifier + ".js", context);
        }
      }
    `),
);
