#ifndef CMONGOC_SHIM_H
#define CMONGOC_SHIM_H
#include <mongoc/mongoc.h>
#include <bson/bson.h>
#endif
