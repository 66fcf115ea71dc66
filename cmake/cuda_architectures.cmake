# uptal_default_cuda_architectures(<out-var>)
# The architectures to build _C_cuda for: what the user asked for (CMAKE_CUDA_ARCHITECTURES on the command
# line or the CUDAARCHS environment variable) or else a list that covers the GPUs the found toolkit supports,
# real code for each plus PTX for the newest so that future GPUs can JIT it.
function(uptal_default_cuda_architectures out)
  if(UPTAL_USER_CUDA_ARCHS)
    set(${out} "${CMAKE_CUDA_ARCHITECTURES}" PARENT_SCOPE)
    return()
  endif()
  set(version "${CMAKE_CUDA_COMPILER_VERSION}")
  if(version VERSION_GREATER_EQUAL 13.0)
    set(archs 75-real 80-real 86-real 89-real 90-real 100-real 120)      # CUDA 13 has no sm_70
  elseif(version VERSION_GREATER_EQUAL 12.8)
    set(archs 70-real 75-real 80-real 86-real 89-real 90-real 100-real 120)
  elseif(version VERSION_GREATER_EQUAL 11.8)
    set(archs 70-real 75-real 80-real 86-real 89-real 90)
  else()
    set(archs 70-real 75-real 80-real 86)
  endif()
  set(${out} "${archs}" PARENT_SCOPE)
endfunction()
