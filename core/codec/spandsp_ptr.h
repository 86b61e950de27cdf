// Owning pointers for spandsp's C state objects, which each come with an
// xxx_init(NULL, ...) that allocates and an xxx_free() that releases.
#pragma once

#include <memory>
#include <new>

namespace callbox::codec {

template <auto Free>
struct SpandspFree {
    template <typename T>
    void operator()(T* state) const noexcept {
        Free(state);
    }
};

template <typename T, auto Free>
using SpandspPtr = std::unique_ptr<T, SpandspFree<Free>>;

/// Takes ownership of what an xxx_init(NULL, ...) returned; a null result
/// means spandsp could not allocate.
template <typename T, auto Free>
SpandspPtr<T, Free> spandsp_owned(T* state) {
    if (state == nullptr) throw std::bad_alloc();
    return SpandspPtr<T, Free>(state);
}

}  // namespace callbox::codec
