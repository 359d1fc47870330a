/// <reference path="../pb_data/types.d.ts" />
// Schema for the offline-sync test suite, applied by `pocketbase serve` on a fresh
// data dir (run copies this folder to WORKDIR/pb_migrations).
//
// Three public collections (all API rules "" = anyone may list/view/create/update/delete).
// Each has PocketBase's own `id` field (text, primary key, exactly 15 chars of [a-z0-9],
// auto-generated when the client does not send one, kept when it does) plus
// title (text, may be empty), count (integer-only number) and done (bool).
//
// A superuser is created too, only so that `serve` does not run its first-start
// installer (which prints a link and tries to open a browser). The tests do not use it.
migrate((app) => {
  for (const name of ["tasks", "notes", "customers"]) {
    const collection = new Collection({
      type: "base",
      name: name,
      listRule: "",
      viewRule: "",
      createRule: "",
      updateRule: "",
      deleteRule: "",
      fields: [
        { name: "title", type: "text" },
        { name: "count", type: "number", onlyInt: true },
        { name: "done", type: "bool" },
      ],
    });
    app.save(collection);
  }

  const superuser = new Record(app.findCollectionByNameOrId("_superusers"));
  superuser.set("email", "harness@example.com");
  superuser.set("password", "harness-password-0");
  app.save(superuser);
}, (app) => {
  for (const name of ["tasks", "notes", "customers"]) {
    app.delete(app.findCollectionByNameOrId(name));
  }
});
