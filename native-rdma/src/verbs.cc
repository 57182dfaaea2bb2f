// The verbs provider's probe: libibverbs and librdmacm are opened at run time (dlopen), so the addon
// loads on machines without them. Only the stable C entry points below are used, so the addon builds
// without the development headers.

#include <dlfcn.h>
#include <napi.h>

#include <string>
#include <vector>

namespace orderer_rdma {

namespace {

struct ibv_device;
using GetDeviceList = ibv_device** (*)(int*);
using FreeDeviceList = void (*)(ibv_device**);
using GetDeviceName = const char* (*)(ibv_device*);

std::string DlError() {
  const char* e = dlerror();
  return e ? std::string(e) : std::string("unknown dlopen error");
}

}  // namespace

// probeVerbs() -> { status: "ok" | "no-device" | "no-library", library, rdmacm, devices, reason }
Napi::Value ProbeVerbs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array devices = Napi::Array::New(env);
  out.Set("devices", devices);

  void* cm = dlopen("librdmacm.so.1", RTLD_NOW | RTLD_LOCAL);
  out.Set("rdmacm", Napi::Boolean::New(env, cm != nullptr));
  if (cm) dlclose(cm);

  void* lib = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    out.Set("status", "no-library");
    out.Set("library", env.Null());
    out.Set("reason", "libibverbs.so.1 not found: " + DlError());
    return out;
  }
  out.Set("library", "libibverbs.so.1");
  auto getList = reinterpret_cast<GetDeviceList>(dlsym(lib, "ibv_get_device_list"));
  auto freeList = reinterpret_cast<FreeDeviceList>(dlsym(lib, "ibv_free_device_list"));
  auto getName = reinterpret_cast<GetDeviceName>(dlsym(lib, "ibv_get_device_name"));
  if (!getList || !freeList || !getName) {
    out.Set("status", "no-library");
    out.Set("reason", "libibverbs.so.1 lacks the device-list entry points");
    dlclose(lib);
    return out;
  }
  int num = 0;
  ibv_device** list = getList(&num);
  std::vector<std::string> names;
  if (list) {
    for (int i = 0; i < num && list[i]; i++) {
      const char* name = getName(list[i]);
      names.emplace_back(name ? name : "?");
    }
    freeList(list);
  }
  for (size_t i = 0; i < names.size(); i++) devices.Set(static_cast<uint32_t>(i), names[i]);
  if (names.empty()) {
    out.Set("status", "no-device");
    out.Set("reason", list ? "libibverbs found no RDMA device"
                           : "libibverbs could not list devices (no RDMA support in this kernel)");
  } else {
    out.Set("status", "ok");
    out.Set("reason", "");
  }
  // The library stays loaded when a device exists (the data path would use it); otherwise it is released.
  if (names.empty()) dlclose(lib);
  return out;
}

}  // namespace orderer_rdma
