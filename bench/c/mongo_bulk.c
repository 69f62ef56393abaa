/* The hand-written limit for the Mongo apply's client side: build N orders-shaped documents with libbson and
 * send them as unordered bulk replace-upserts (1,000 per batch, w:majority), as mongoshift's applier does.
 * usage: mongo_bulk URI DATABASE COLLECTION ROWS */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s URI DB COLL ROWS\n", argv[0]); return 2; }
    mongoc_init();
    bson_error_t error;
    mongoc_client_t *client = mongoc_client_new(argv[1]);
    if (!client) { fprintf(stderr, "bad uri\n"); return 2; }
    mongoc_collection_t *coll = mongoc_client_get_collection(client, argv[2], argv[3]);
    long rows = atol(argv[4]);
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false), "writeConcern", "{", "w", "majority", "}");
    bson_t *upsert = BCON_NEW("upsert", BCON_BOOL(true));
    bson_decimal128_t dec;
    for (long start = 1; start <= rows; start += 1000) {
        mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, opts);
        for (long id = start; id < start + 1000 && id <= rows; id++) {
            char note[64], amount[32];
            snprintf(note, sizeof note, "note %ld", id);
            snprintf(amount, sizeof amount, "%ld.%04ld", id, id % 10000);
            bson_decimal128_from_string(amount, &dec);
            bson_t filter = BSON_INITIALIZER, doc = BSON_INITIALIZER, attrs;
            BSON_APPEND_INT64(&filter, "_id", id);
            BSON_APPEND_INT64(&doc, "_id", id);
            BSON_APPEND_INT64(&doc, "id", id);
            BSON_APPEND_INT32(&doc, "customer_id", (int32_t)(id % 997));
            BSON_APPEND_INT32(&doc, "quantity", (int32_t)(id % 50));
            BSON_APPEND_DECIMAL128(&doc, "amount", &dec);
            BSON_APPEND_DOUBLE(&doc, "score", id / 3.0);
            BSON_APPEND_BOOL(&doc, "paid", id % 3 == 0);
            BSON_APPEND_UTF8(&doc, "status", "shipped");
            BSON_APPEND_UTF8(&doc, "note", note);
            BSON_APPEND_UTF8(&doc, "description", "lorem ipsum lorem ipsum lorem ipsum");
            BSON_APPEND_DATE_TIME(&doc, "created_at", 1704067200000LL + id * 60000);
            BSON_APPEND_DATE_TIME(&doc, "updated_at", 1704067200000LL + id * 60000);
            BSON_APPEND_DOCUMENT_BEGIN(&doc, "attrs", &attrs);
            BSON_APPEND_INT64(&attrs, "k", id % 13);
            bson_append_document_end(&doc, &attrs);
            if (!mongoc_bulk_operation_replace_one_with_opts(bulk, &filter, &doc, upsert, &error)) {
                fprintf(stderr, "%s\n", error.message); return 1;
            }
            bson_destroy(&filter);
            bson_destroy(&doc);
        }
        bson_t reply;
        if (!mongoc_bulk_operation_execute(bulk, &reply, &error)) { fprintf(stderr, "%s\n", error.message); return 1; }
        bson_destroy(&reply);
        mongoc_bulk_operation_destroy(bulk);
    }
    printf("%ld\n", rows);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mongoc_cleanup();
    return 0;
}
